"""One table from exceptions to the HTTP error shape of docs/http-api.md.

    {"error": {"code": "rate_limited", "message": "...", "retry_after": 3}}

Every handler here answers with that shape; nothing, however malformed the request, turns
into a traceback. Unexpected exceptions are logged with their traceback and answered 500
``internal_error`` (a bug, never a reaction to input).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from .. import errors as e
from ..web.errors import (
    NOT_FOUND,
    TABLE,
    ApiError,
    Rule,
    invalid,
    invalid_fields,
    respond,
    to_api_error,
    unauthorized,
)

log = logging.getLogger("sessionward.service")

__all__ = ["NOT_FOUND", "TABLE", "ApiError", "Rule", "install", "invalid", "invalid_fields",
           "respond", "to_api_error", "unauthorized"]  # fmt: skip


def install(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return respond(exc)

    async def ours(request: Request, exc: Exception) -> JSONResponse:
        try:
            return respond(to_api_error(exc))
        except LookupError:
            return await crash(request, exc)

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return respond(ApiError(422, "invalid_request", "The request is not valid.",
                                [_field(err) for err in exc.errors()][:20]))  # fmt: skip

    async def http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            allow = _allowed(request) or (exc.headers or {}).get("Allow", "")
            return respond(ApiError(405, "method_not_allowed", "Method not allowed.",
                                    headers={"Allow": allow} if allow else {}))  # fmt: skip
        if exc.status_code == 404:
            return respond(NOT_FOUND)
        return respond(ApiError(exc.status_code, "http_error", str(exc.detail)))

    async def crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return respond(ApiError(500, "internal_error", "Something went wrong on our side."))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(e.SessionwardError, ours)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http)
    app.add_exception_handler(Exception, crash)


def _field(error: Any) -> dict[str, str]:
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    name = ".".join(loc) if loc else "body"
    if error.get("loc", ("",))[0] == "header":
        name = "-".join(p.capitalize() for p in loc[1:] or ["header"]) if loc else "header"
    return {"field": name, "message": str(error.get("msg", "invalid"))}


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed(request: Request) -> str:
    """Every method the path takes. Starlette's 405 names only the first route that matched
    the path, where a path served by several routes (GET and POST of ``/v1/jobs``) takes more.
    Each method is tried on the app's router as it would route it, prefixes and all."""
    routes = request.app.router.routes
    allowed = [
        method for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
    ]  # fmt: skip
    return ", ".join(allowed)
