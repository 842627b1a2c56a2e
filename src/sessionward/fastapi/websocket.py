"""A guard for your own WebSocket route: authentication, a per-session message rate, a size
limit, and a close within a second of the session's revocation (docs/websocket.md).

    app = FastAPI(lifespan=sw.lifespan)
    install_handlers(app)       # a refused socket (WebSocketRefused) ends the route quietly

    @app.websocket("/ws")
    async def chat(websocket: WebSocket) -> None:
        async with sw.websocket(websocket) as guarded:
            async for message in guarded:      # {"type": "message", "text": "..."}, admitted
                await guarded.publish({"type": "message", "text": message["text"]})

Entering accepts the socket and authenticates it (a first frame ``{"type": "auth",
"access_token": ...}`` or a ``bearer.<token>`` subprotocol), then sends ``{"type": "ready",
"session_id": ...}``. A refused socket is closed with the documented code and entering raises
:class:`WebSocketRefused`, so the body never runs. While the body runs, background tasks
forward the user's channel of the event hub to the socket and re-read the session every
``ws_session_check_interval``; whatever closes the socket (revocation 4401, a flood 1008, a
frame too big 1009, the hub shutting down 1012) cancels the body too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from contextlib import AsyncExitStack, suppress
from types import TracebackType
from typing import Any

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from .._groups import collapse_single_errors
from ..auth.manager import Principal
from ..errors import InvalidToken, SessionError, StorageError
from ..events import EventHub, Subscription, user_channel
from ..limits import parse_policy
from ..sessions import Session
from ..ward import Ward
from ..web.ws_frames import AUTH, CHAT, Frame, Shapes, frame_size, parse_frame

log = logging.getLogger("sessionward.ws")

NORMAL = 1000
POLICY_VIOLATION = 1008
TOO_BIG = 1009
SERVICE_RESTART = 1012
TRY_AGAIN_LATER = 1013
UNAUTHORIZED = 4401
MAX_DROPPED = 10  # rate-limited messages in a row before the socket is closed
MAX_CHECK_FAILURES = 10  # session checks in a row the store could not answer
BEARER_PREFIX = "bearer."  # a subprotocol carrying the access token


class WebSocketRefused(Exception):
    """The guard refused the socket and has closed it with ``code``; ``install_handlers``
    turns it into a quiet end of the route."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"WebSocket refused ({code}): {reason}")
        self.code = code
        self.reason = reason


def error_frame(code: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, **extra}


class GuardedWebSocket:
    """One authenticated socket: iterate it for admitted messages, send to it, publish to the
    user's channel. Build it with ``SessionWard.websocket(websocket)``.

    ``shapes`` maps each message type the client may send to its (string) fields; ``auth`` is
    the guard's own. ``rate`` is a policy per session (default ``ws_rate_limit``), counted
    under ``f"{name}:<session_id>"``. ``channels`` are hub channels forwarded to the socket
    besides the user's own. ``subprotocol`` is echoed when the client offers it.
    """

    def __init__(
        self,
        websocket: WebSocket,
        ward: Ward,
        hub: EventHub | None = None,
        *,
        shapes: Shapes = CHAT,
        rate: str | None = None,
        name: str = "ws",
        channels: Iterable[str] = (),
        subprotocol: str = "sessionward",
    ) -> None:
        if "auth" in shapes:
            raise ValueError("'auth' is the guard's own message type")
        self._ws = websocket
        self._ward = ward
        self._hub = hub
        self._settings = ward.settings
        self._shapes: Shapes = {**shapes, **AUTH}
        self._policy = parse_policy(rate or ward.settings.ws_rate_limit, name)
        self._name = name
        self._channels = tuple(channels)
        self._subprotocol = subprotocol
        self._send_lock = anyio.Lock()
        self._stack = AsyncExitStack()
        self._scope: anyio.CancelScope | None = None
        self._principal: Principal | None = None
        self._closed = False
        self._close_code = (NORMAL, "")
        self._dropped = 0

    # who

    @property
    def principal(self) -> Principal:
        """The signed-in principal; ``RuntimeError`` outside ``async with``."""
        if self._principal is None:
            raise RuntimeError("not authenticated: use the guard inside `async with`")
        return self._principal

    @property
    def session(self) -> Session:
        return self.principal.session

    @property
    def user_id(self) -> str:
        return self.principal.user_id

    @property
    def closed(self) -> bool:
        return self._closed

    # the context

    async def __aenter__(self) -> GuardedWebSocket:
        await self._stack.__aenter__()
        try:
            principal = await self._authenticate()
            if principal is None:
                raise WebSocketRefused(*self._close_code)
            self._principal = principal
            subscriptions: list[Subscription] = []
            if self._hub is not None:
                for channel in (user_channel(principal.user_id), *self._channels):
                    subscriptions.append(
                        await self._stack.enter_async_context(self._hub.subscribe(channel))
                    )
            await self._stack.enter_async_context(collapse_single_errors())
            tasks = await self._stack.enter_async_context(anyio.create_task_group())
            self._scope = tasks.cancel_scope
            if self._closed:
                tasks.cancel_scope.cancel()
            tasks.start_soon(self._watch_session)
            for events in subscriptions:
                tasks.start_soon(self._forward, events)
            await self.send_json({"type": "ready", "session_id": principal.session.session_id})
        except BaseException:
            await self._stack.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._scope is not None:
            self._scope.cancel()  # the background loops end with the body
        # an exception of the body's propagates as itself with the socket open, so the app's
        # handler (e.g. Starlette's for WebSocketException) picks the close code
        suppressed = bool(await self._stack.__aexit__(kind, exc, tb))
        await self.close(NORMAL, "")
        return suppressed

    # messages

    def __aiter__(self) -> GuardedWebSocket:
        return self

    async def __anext__(self) -> dict[str, str]:
        """The next message of a known shape within the rate; invalid frames are answered
        with ``invalid_message`` and refused ones with ``rate_limited``."""
        while (frame := await self._receive()) is not None:
            message = parse_frame(frame, self._shapes)
            if message is None or message["type"] == "auth":
                await self.send_json(error_frame("invalid_message"))
            elif await self._admitted():
                return message
        raise StopAsyncIteration

    async def send_json(self, message: Mapping[str, Any]) -> None:
        """Send one JSON frame to this socket; nothing once it is closed."""
        text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        async with self._send_lock:
            if self._closed or self._ws.application_state != WebSocketState.CONNECTED:
                return
            try:
                await self._ws.send_text(text)
            except (WebSocketDisconnect, OSError):
                self._gone()

    async def publish(self, event: Mapping[str, Any], channel: str | None = None) -> bool:
        """Publish to the user's channel (or ``channel``): every socket subscribed to it, on
        every instance sharing the store, receives it. On a store failure this socket gets
        ``store_unavailable`` and the answer is ``False``."""
        if self._hub is None:
            raise RuntimeError("no event hub: build SessionWard(..., events=True)")
        try:
            await self._hub.publish(channel or user_channel(self.user_id), dict(event))
        except StorageError:
            await self.send_json(error_frame("store_unavailable"))
            return False
        return True

    async def close(self, code: int = NORMAL, reason: str = "") -> None:
        """Close the socket (once) and cancel the body."""
        async with self._send_lock:
            if self._closed:
                return
            self._closed = True
            self._close_code = (code, reason)
            if self._ws.application_state == WebSocketState.CONNECTED:
                with suppress(WebSocketDisconnect, OSError, RuntimeError):
                    await self._ws.close(code, reason)
        if self._scope is not None:
            self._scope.cancel()

    # authentication

    async def _authenticate(self) -> Principal | None:
        offered = list(self._ws.scope.get("subprotocols") or ())
        token = next(
            (p[len(BEARER_PREFIX) :] for p in offered if p.startswith(BEARER_PREFIX)), None
        )
        await self._ws.accept(
            subprotocol=self._subprotocol if self._subprotocol in offered else None
        )
        if token is None:
            token = await self._auth_frame()
            if token is None:
                return None
        try:
            return await self._ward.auth.authenticate(token)
        except (InvalidToken, SessionError):
            await self.close(UNAUTHORIZED, "the access token is invalid, expired or revoked")
        except StorageError as exc:
            log.warning("a WebSocket could not be authenticated: %s", exc)
            await self.close(TRY_AGAIN_LATER, "the store is unavailable")
        return None

    async def _auth_frame(self) -> str | None:
        frame: Frame | None = None
        with anyio.move_on_after(self._settings.ws_auth_timeout) as waiting:
            frame = await self._receive()
        if waiting.cancelled_caught:
            await self.close(POLICY_VIOLATION, "no auth message in time")
        if frame is None or self._closed:
            return None
        message = parse_frame(frame, AUTH)
        if message is None:
            await self.close(POLICY_VIOLATION, "the first message must be an auth message")
            return None
        return message["access_token"]

    # the background loops

    async def _forward(self, events: Subscription) -> None:
        async for event in events:
            await self.send_json(event)
        await self.close(SERVICE_RESTART, "the service is shutting down")

    async def _watch_session(self) -> None:
        failures = 0
        session_id = self.session.session_id
        while failures < MAX_CHECK_FAILURES:
            await anyio.sleep(self._settings.ws_session_check_interval)
            try:
                await self._ward.sessions.get(self.user_id, session_id)
            except SessionError:
                await self.close(UNAUTHORIZED, "the session has ended")
                return
            except StorageError as exc:
                failures += 1
                log.debug("session check failed (%d in a row): %s", failures, exc)
            else:
                failures = 0
        await self.close(TRY_AGAIN_LATER, "the session cannot be checked")

    # the rate

    async def _admitted(self) -> bool:
        key = f"{self._name}:{self.session.session_id}"
        try:
            decision = await self._ward.limits.hit(key, self._policy, fail="closed")
        except StorageError:
            await self.send_json(error_frame("store_unavailable"))
            return False
        if decision.allowed:
            self._dropped = 0
            return True
        self._dropped += 1
        retry_after = round(max(decision.retry_after, 0.001), 3)
        await self.send_json(error_frame("rate_limited", retry_after=retry_after))
        if self._dropped >= MAX_DROPPED:
            await self.close(POLICY_VIOLATION, "too many messages over the rate limit")
        return False

    # the socket

    async def _receive(self) -> Frame | None:
        """The next frame; ``None`` once the socket is closing or closed."""
        if self._closed:
            return None
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            self._gone()
            return None
        frame: Frame = message.get("text") or message.get("bytes") or ""
        if frame_size(frame) > self._settings.ws_max_message_bytes:
            await self.close(TOO_BIG, "the message is too big")
            return None
        return frame

    def _gone(self) -> None:
        if not self._closed:
            self._closed, self._close_code = True, (1006, "the client went away")
        if self._scope is not None:
            self._scope.cancel()
