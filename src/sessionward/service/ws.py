"""The WebSocket endpoint ``GET /v1/ws`` (docs/websocket.md).

    -> {"type": "auth", "access_token": "..."}       first, within ws_auth_timeout
    <- {"type": "ready", "session_id": "..."}
    -> {"type": "message", "text": "hi"}
    <- {"type": "message", "text": "hi", "at": "2025-01-01T12:00:00.000Z"}   on every
       connection of the user, on every instance sharing the store

A connection runs three loops until the first of them ends it: reading the client's frames,
forwarding the user's channel of the event hub, and re-reading the session every
``ws_session_check_interval`` seconds, which closes the socket with 4401 once the session
is revoked or expired, whichever instance revoked it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from typing import Any

import anyio
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ..auth.manager import Principal
from ..clock import iso_utc
from ..errors import InvalidToken, SessionError, StorageError
from ..events import EventHub, Subscription, user_channel
from ..limits import parse_policy
from ..ward import Ward

log = logging.getLogger("sessionward.ws")
router = APIRouter()

POLICY_VIOLATION = 1008
TOO_BIG = 1009
SERVICE_RESTART = 1012
TRY_AGAIN_LATER = 1013
UNAUTHORIZED = 4401
MAX_DROPPED = 10  # rate-limited messages in a row before the socket is closed
MAX_CHECK_FAILURES = 10  # session checks in a row the store could not answer

# The fields of each message type a client may send; every field is a string.
SHAPES: dict[str, frozenset[str]] = {
    "auth": frozenset({"access_token"}),
    "message": frozenset({"text"}),
}
Frame = str | bytes


@router.websocket("/v1/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await Connection(websocket, websocket.app.state.ward, websocket.app.state.events).serve()


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_message(frame: Frame) -> dict[str, str] | None:
    """A client message of a known type with exactly its fields, or ``None``."""
    if not isinstance(frame, str):
        return None  # binary frames are not part of the protocol
    try:
        value = json.loads(frame, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    fields = SHAPES.get(kind) if isinstance(kind, str) else None
    if fields is None or set(value) != {"type", *fields}:
        return None
    if not all(_unicode(value[name]) for name in fields):
        return None
    return value


def _unicode(value: object) -> bool:
    # json.loads turns "\ud800" into a lone surrogate, which no UTF-8 frame can carry back
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _error(code: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, **extra}


class Connection:
    """One client's socket, from the auth message to the close."""

    def __init__(self, websocket: WebSocket, ward: Ward, hub: EventHub) -> None:
        self._ws = websocket
        self._ward = ward
        self._hub = hub
        self._settings = ward.settings
        self._policy = parse_policy(ward.settings.ws_rate_limit, "ws")
        self._send_lock = anyio.Lock()
        self._tasks: anyio.CancelScope | None = None
        self._closed = False
        self._dropped = 0
        self._user_id = self._session_id = ""

    async def serve(self) -> None:
        principal = await self._authenticate()
        if principal is None:
            return
        self._user_id, self._session_id = principal.user_id, principal.session.session_id
        async with self._hub.subscribe(user_channel(self._user_id)) as events:
            await self._send({"type": "ready", "session_id": self._session_id})
            await self._race(self._read, self._watch_session, lambda: self._forward(events))

    async def _race(self, *loops: Callable[[], Awaitable[None]]) -> None:
        """Run the loops until the first one ends, then stop the others."""

        async def until_done(loop: Callable[[], Awaitable[None]]) -> None:
            await loop()
            tasks.cancel_scope.cancel()

        async with anyio.create_task_group() as tasks:
            self._tasks = tasks.cancel_scope
            if self._closed:
                tasks.cancel_scope.cancel()
            for loop in loops:
                tasks.start_soon(until_done, loop)

    # authentication

    async def _authenticate(self) -> Principal | None:
        frame: Frame | None = None
        with anyio.move_on_after(self._settings.ws_auth_timeout) as waiting:
            frame = await self._receive()
        if waiting.cancelled_caught:
            await self._close(POLICY_VIOLATION, "no auth message in time")
        if frame is None or self._closed:
            return None
        message = parse_message(frame)
        if message is None or message["type"] != "auth":
            await self._close(POLICY_VIOLATION, "the first message must be an auth message")
            return None
        try:
            return await self._ward.auth.authenticate(message["access_token"])
        except (InvalidToken, SessionError):
            await self._close(UNAUTHORIZED, "the access token is invalid, expired or revoked")
        except StorageError as exc:
            log.warning("a WebSocket could not be authenticated: %s", exc)
            await self._close(TRY_AGAIN_LATER, "the store is unavailable")
        return None

    # the three loops

    async def _read(self) -> None:
        while (frame := await self._receive()) is not None:
            message = parse_message(frame)
            if message is None or message["type"] != "message":
                await self._send(_error("invalid_message"))
            else:
                await self._on_message(message["text"])

    async def _forward(self, events: Subscription) -> None:
        async for event in events:
            await self._send(event)
        await self._close(SERVICE_RESTART, "the service is shutting down")

    async def _watch_session(self) -> None:
        failures = 0
        while failures < MAX_CHECK_FAILURES:
            await anyio.sleep(self._settings.ws_session_check_interval)
            try:
                await self._ward.sessions.get(self._user_id, self._session_id)
            except SessionError:
                await self._close(UNAUTHORIZED, "the session has ended")
                return
            except StorageError as exc:
                failures += 1
                log.debug("session check failed (%d in a row): %s", failures, exc)
            else:
                failures = 0
        await self._close(TRY_AGAIN_LATER, "the session cannot be checked")

    # messages

    async def _on_message(self, text: str) -> None:
        key = f"ws:{self._session_id}"
        try:
            decision = await self._ward.limits.hit(key, self._policy, fail="closed")
        except StorageError:
            await self._send(_error("store_unavailable"))
            return
        if not decision.allowed:
            await self._refuse(decision.retry_after)
            return
        self._dropped = 0
        event = {"type": "message", "text": text, "at": iso_utc(self._ward.clock.now())}
        try:
            await self._hub.publish(user_channel(self._user_id), event)
        except StorageError:
            await self._send(_error("store_unavailable"))

    async def _refuse(self, retry_after: float) -> None:
        self._dropped += 1
        await self._send(_error("rate_limited", retry_after=round(max(retry_after, 0.001), 3)))
        if self._dropped >= MAX_DROPPED:
            await self._close(POLICY_VIOLATION, "too many messages over the rate limit")

    # the socket

    async def _receive(self) -> Frame | None:
        """The next frame; ``None`` once the socket is closing or closed."""
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            self._gone()
            return None
        frame: Frame = message.get("text") or message.get("bytes") or ""
        size = len(frame.encode("utf-8")) if isinstance(frame, str) else len(frame)
        if size > self._settings.ws_max_message_bytes:
            await self._close(TOO_BIG, "the message is too big")
            return None
        return frame

    async def _send(self, message: Mapping[str, Any]) -> None:
        text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        async with self._send_lock:
            if self._closed or self._ws.application_state != WebSocketState.CONNECTED:
                return
            try:
                await self._ws.send_text(text)
            except (WebSocketDisconnect, OSError):
                self._gone()

    async def _close(self, code: int, reason: str) -> None:
        async with self._send_lock:
            if self._closed:
                return
            self._closed = True
            if self._ws.application_state == WebSocketState.CONNECTED:
                with suppress(WebSocketDisconnect, OSError):
                    await self._ws.close(code, reason)
        if self._tasks is not None:
            self._tasks.cancel()

    def _gone(self) -> None:
        self._closed = True
        if self._tasks is not None:
            self._tasks.cancel()
