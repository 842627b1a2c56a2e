"""The reference service: ``create_app()`` builds the FastAPI app of docs/http-api.md.

    uvicorn --factory sessionward.service:create_app     # or: sessionward serve

Settings come from ``SESSIONWARD_*`` unless given. Start-up opens the store and loads the
signing keys, so a missing ``SESSIONWARD_SECRET_KEY`` on a shared store stops it at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CollectorRegistry

from ..config import Settings
from ..fastapi import SessionWard
from ..jobs.builtin import BUILTIN
from ..web.limits import RateLimitMiddleware
from . import admin, errors, ws
from .body import BodyLimit, StrictJSONRoute
from .capacity import activity_of, admit_login, metrics_port, metrics_response, run_capacity
from .limits import rate_limit_rules
from .metrics import RequestMetrics, ServiceMetrics
from .models import ErrorResponse
from .openapi import openapi_with_kinds
from .routes import budget, health, jobs, me, state

_ERRORS = {status: {"model": ErrorResponse} for status in (401, 404, 409, 412, 413, 422, 429, 503)}


def service_ward(settings: Settings, metrics: ServiceMetrics) -> SessionWard:
    """The ward, the event hub, the built-in job kinds and this instance's worker. On a
    clean stop the worker hands the jobs it was running back to the queue at once."""
    return SessionWard(settings.store, settings=settings, events=True, worker=True, kinds=BUILTIN,
                       on_job_finished=metrics.observe_job)  # fmt: skip


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    registry = CollectorRegistry()
    service_metrics = ServiceMetrics(registry)
    sw = service_ward(settings, service_metrics)

    @asynccontextmanager
    async def published(app: FastAPI) -> AsyncIterator[None]:
        app.state.ward = sw.ward  # the WebSocket (service/ws.py) reads these two
        app.state.events = sw.events
        # capacity (issue 13): the monitor, and metrics on their own port if so set
        with metrics_port(sw.ward, registry):
            async with run_capacity(sw.ward, service_metrics):
                yield

    app = FastAPI(
        title="sessionward",
        version="1",
        description="Isolated sessions, state and tokens. See docs/http-api.md.",
        lifespan=sw.wrap(published),
        responses=_ERRORS,  # type: ignore[arg-type]
    )
    app.openapi = openapi_with_kinds(app, BUILTIN)  # type: ignore[method-assign]
    errors.install(app)
    app.include_router(health.router)
    # capacity (issue 13): admission on the auth router; only its login asks
    app.include_router(sw.auth_router(sessions=False, route_class=StrictJSONRoute),
                       prefix="/v1/auth", dependencies=[Depends(admit_login)])  # fmt: skip
    app.include_router(sw.sessions_router(route_class=StrictJSONRoute), prefix="/v1/sessions")
    for router in (me.router, state.router, budget.router, jobs.router, ws.router, admin.router):
        app.include_router(router)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> PlainTextResponse:
        return await metrics_response(request, registry)  # admin-only unless set public

    app.add_middleware(
        RateLimitMiddleware,
        limiter=lambda scope: sw.ward.limits,
        rules=rate_limit_rules(settings, lambda token: sw.ward.auth.tokens.verify(token)),
    )
    app.add_middleware(RequestMetrics, metrics=service_metrics, activity=activity_of)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
