"""The object that owns one app's ward: opened by the app's lifespan, closed on shutdown.

    sw = SessionWard("sqlite:///app.db", settings=Settings(secret_key="..."))
    app = FastAPI(lifespan=sw.lifespan)

``sw.wrap(my_lifespan)`` composes with the app's own lifespan: the ward is open before it
starts and closed after it ends. ``sw.auth_router()`` is the auth router (docs/fastapi.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.websockets import WebSocket

from ..auth.keys import load_keys
from ..config import Settings
from ..events import EventHub, open_event_hub
from ..jobs import JobKind, JobWorker
from ..limits import FailMode
from ..stores.records import JobRow
from ..urls import StoreURL
from ..ward import Ward, open_ward
from ..web.ws_frames import CHAT, Shapes
from .auth import auth_router, sessions_router
from .cookies import RefreshCookie
from .deps import Dependencies
from .limits import KeyFactory, by_ip, route_limit
from .websocket import GuardedWebSocket

Lifespan = Callable[[Any], AbstractAsyncContextManager[None]]


class SessionWard(Dependencies):
    """One ward (and optionally an event hub and a job worker) for one ASGI app.

    ``kinds`` are the job kinds registered when the ward opens; ``worker=True`` runs them in
    this process for the app's lifetime (``on_job_finished`` is told of each job it ends, e.g.
    for metrics); with ``events`` the jobs publish on the hub.
    ``cookie`` names an HttpOnly cookie the access token may come in when there is no
    ``Authorization`` header; an unsafe request authenticated by a cookie must come from the
    request's own origin or one of ``trusted_origins`` (403 ``csrf_failed``).
    """

    def __init__(
        self,
        url: str | StoreURL | None = None,
        *,
        settings: Settings | None = None,
        events: bool = False,
        worker: bool = False,
        kinds: Sequence[JobKind] = (),
        cookie: str | None = None,
        trusted_origins: Sequence[str] = (),
        on_job_finished: Callable[[JobRow], None] | None = None,
    ) -> None:
        self.settings = settings or Settings.defaults()
        self.url = url or self.settings.store
        self.cookie = cookie
        self.trusted_origins = tuple(trusted_origins)
        self._want_events = events
        self._want_worker = worker
        self._kinds = tuple(kinds)
        self._on_job_finished = on_job_finished
        self._ward: Ward | None = None
        self._events: EventHub | None = None

    @property
    def ward(self) -> Ward:
        if self._ward is None:
            raise RuntimeError(
                "The ward is not open: pass SessionWard.lifespan (or .wrap(...)) to the app."
            )
        return self._ward

    @property
    def events(self) -> EventHub:
        if self._events is None:
            raise RuntimeError("No event hub: build SessionWard(..., events=True).")
        return self._events

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            ward = await stack.enter_async_context(open_ward(self.url, settings=self.settings))
            load_keys(self.settings, ward.store.url)  # refuse to start without a usable secret
            if self._want_events:
                # a WebSocket message's JSON escapes may take six times its size on the wire
                most = 6 * self.settings.ws_max_message_bytes + 4096
                self._events = await stack.enter_async_context(
                    open_event_hub(self.url, max_event_bytes=most)
                )
                ward.jobs.attach_events(self._events)
            for kind in self._kinds:
                ward.jobs.register(kind)
            self._ward = ward
            state = getattr(app, "state", None)
            if state is not None:
                state.sessionward = self  # for from_app's dependencies
            try:
                if self._want_worker:
                    worker = JobWorker(
                        ward.store, ward.jobs, ward.state, ward.settings, clock=ward.clock,
                        on_finished=self._on_job_finished,
                    )  # fmt: skip
                    await stack.enter_async_context(_running(worker))
                yield
            finally:
                self._ward = self._events = None

    def limit(
        self, policy: str, *, key: KeyFactory = by_ip, name: str | None = None,
        fail: FailMode = "closed",
    ) -> Callable[[Request], Awaitable[None]]:  # fmt: skip
        """A dependency enforcing ``policy`` on this route, e.g. ``limit("5/minute",
        key=by_user)``."""
        return route_limit(self, policy, key=key, name=name, fail=fail)

    def auth_router(
        self, *, cookie: RefreshCookie | None = None, sessions: bool = True,
        route_class: type[APIRoute] = APIRoute,
    ) -> APIRouter:  # fmt: skip
        """Register, login, refresh, logout, logout-all and (with ``sessions``) the caller's
        sessions, to include under a prefix: ``app.include_router(sw.auth_router(),
        prefix="/auth")``. ``cookie`` turns on cookie mode for the refresh token."""
        return auth_router(self, cookie=cookie, sessions=sessions, route_class=route_class)

    def sessions_router(self, *, route_class: type[APIRoute] = APIRoute) -> APIRouter:
        """The caller's sessions (list, revoke one) alone, under a prefix of the app's."""
        return sessions_router(self, route_class=route_class)

    def websocket(
        self,
        websocket: WebSocket,
        *,
        shapes: Shapes = CHAT,
        rate: str | None = None,
        name: str = "ws",
        channels: Iterable[str] = (),
        subprotocol: str = "sessionward",
    ) -> GuardedWebSocket:
        """The guard for one of the app's WebSocket routes, with this ward and (if
        ``events=True``) its hub: ``async with sw.websocket(ws) as guarded: ...``
        (:class:`~sessionward.fastapi.websocket.GuardedWebSocket` explains the options)."""
        return GuardedWebSocket(websocket, self.ward, self._events, shapes=shapes, rate=rate,
                                name=name, channels=channels, subprotocol=subprotocol)  # fmt: skip

    def wrap(self, inner: Lifespan) -> Lifespan:
        """The app's own lifespan, run inside this one."""

        @asynccontextmanager
        async def both(app: Any) -> AsyncIterator[None]:
            async with self.lifespan(app), inner(app):
                yield

        return both


@asynccontextmanager
async def _running(worker: JobWorker) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker.run)
        yield
        tasks.cancel_scope.cancel()
