"""The reference service: ``create_app()`` builds the FastAPI app of docs/http-api.md.

    uvicorn --factory sessionward.service:create_app     # or: sessionward serve

Settings come from ``SESSIONWARD_*`` unless given. Start-up opens the store and loads the
signing keys, so a missing ``SESSIONWARD_SECRET_KEY`` on a shared store stops it at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..config import Settings
from ..events import EventHub, open_event_hub
from ..jobs import JobWorker
from ..jobs.builtin import BUILTIN
from ..ward import Ward, open_ward
from ..web.limits import RateLimitMiddleware
from . import errors, ws
from .body import BodyLimit
from .limits import rate_limit_rules
from .metrics import RequestMetrics
from .models import ErrorResponse
from .openapi import openapi_with_kinds
from .routes import auth, budget, health, jobs, sessions, state

_ERRORS = {status: {"model": ErrorResponse} for status in (401, 404, 409, 412, 413, 422, 429, 503)}


@asynccontextmanager
async def run_jobs(ward: Ward, events: EventHub) -> AsyncIterator[JobWorker]:
    """The built-in job kinds, job events on the hub, and this instance's worker. On the
    way out the worker stops; jobs it was running run again once their lease runs out."""
    for kind in BUILTIN:
        ward.jobs.register(kind)
    ward.jobs.events = events
    worker = JobWorker(ward.store, ward.jobs, ward.state, ward.settings, clock=ward.clock)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker.run)
        yield worker
        tasks.cancel_scope.cancel()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    registry = CollectorRegistry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            open_ward(settings.store, settings=settings) as ward,
            # a WebSocket message's JSON escapes may take six times its size on the wire
            open_event_hub(
                settings.store, max_event_bytes=6 * settings.ws_max_message_bytes + 4096
            ) as events,
        ):
            _ = ward.auth  # load the keys now: refuse to start without a usable secret
            app.state.ward = ward
            app.state.events = events
            async with run_jobs(ward, events):
                yield

    app = FastAPI(
        title="sessionward",
        version="1",
        description="Isolated sessions, state and tokens. See docs/http-api.md.",
        lifespan=lifespan,
        responses=_ERRORS,  # type: ignore[arg-type]
    )
    app.openapi = openapi_with_kinds(app, BUILTIN)  # type: ignore[method-assign]
    errors.install(app)
    for router in (health.router, auth.router, sessions.router, state.router, budget.router,
                   jobs.router, ws.router):  # fmt: skip
        app.include_router(router)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(
        RateLimitMiddleware,
        limiter=lambda scope: scope["app"].state.ward.limits,
        rules=rate_limit_rules(settings, lambda token: app.state.ward.auth.tokens.verify(token)),
    )
    app.add_middleware(RequestMetrics, registry=registry)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
