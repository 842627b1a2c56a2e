"""Request bodies: a size cap, and JSON that is strictly JSON.

Python's ``json`` accepts NaN and Infinity and produces lone surrogates from ``\\ud800``
escapes; neither is JSON a client may rely on, so a route of :class:`StrictJSONRoute` checks
the raw body first and answers 422 ``invalid_request`` (field ``body``) for anything that
is not UTF-8 JSON of plain values. :class:`BodyLimit` answers 413 before reading past
``max_bytes``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, invalid, respond

_WITH_BODY = {"POST", "PUT", "PATCH"}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400: valid JSON syntax, but no JSON value a client can mean
        raise ValueError(f"{text} is out of range")
    return value


def check_json(raw: bytes) -> None:
    """Raise :class:`ApiError` unless ``raw`` is strict JSON."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid("body", "the body is not UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise invalid("body", f"the body is not valid JSON: {exc}") from None
    if not _plain(value):
        raise invalid("body", "the body holds a lone surrogate, which is not valid Unicode")


def _plain(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str):
        return not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return all(_plain(k, depth) and _plain(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v, depth + 1) for v in value)
    return True


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            if request.method in _WITH_BODY and self.body_field is not None:
                kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
                if kind != "application/json":
                    raise invalid("body", "send the body as application/json")
                check_json(await request.body())
            return await handler(request)

        return strict


class BodyLimit:
    """Pure ASGI middleware: 413 ``too_large`` for a body over ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._too_large(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise ApiError(413, "too_large", "The request body is too large.")
            return message

        await self.app(scope, counted, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = ApiError(413, "too_large", f"The request body is over {self.max_bytes} bytes.")
        await respond(error)(scope, receive, send)
