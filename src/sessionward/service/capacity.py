"""The service's side of capacity: the monitor running in the lifespan, admission before
new work (login, job submission, a new WebSocket), and who may read ``/metrics``.

Admission refuses with 503 ``over_capacity`` and ``Retry-After`` (the error table of
web/errors.py), and a WebSocket with close code 1013 (try again later).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio
from fastapi import Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.exposition import start_http_server
from starlette.types import Scope

from ..auth.manager import Principal
from ..capacity import Activity
from ..errors import StorageError
from ..fastapi.deps import access_token
from ..ward import Ward
from .deps import Authenticated, WardDep
from .errors import ApiError, unauthorized
from .metrics import ServiceMetrics, render, scrape_registry

log = logging.getLogger("sessionward.service")


@asynccontextmanager
async def run_capacity(ward: Ward, metrics: ServiceMetrics) -> AsyncIterator[None]:
    """Sample in the background while the app runs; gauges and decision counters follow."""
    ward.capacity.listeners.append(metrics.observe_sample)
    ward.capacity.admission.on_decision = metrics.observe_decision
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(ward.capacity.run)
        yield
        tasks.cancel_scope.cancel()


def activity_of(scope: Scope) -> Activity | None:
    """The request counters of the app's monitor (``None`` before the lifespan opened it)."""
    ward: Ward | None = getattr(scope["app"].state, "ward", None)
    return None if ward is None else ward.capacity.activity


async def _login_user(request: Request, ward: Ward) -> str | None:
    """The user a login names (the body is read once; FastAPI reuses it), or ``None``."""
    try:
        body = json.loads(await request.body())
        username = body.get("username") if isinstance(body, dict) else None
        with anyio.fail_after(ward.settings.capacity_store_timeout):
            user = await ward.users.find(username) if isinstance(username, str) else None
    except (ValueError, TimeoutError, StorageError):
        return None  # a bad body meets its 422; the store's trouble meets the login
    return None if user is None else user.user_id


async def admit_login(request: Request, ward: WardDep) -> None:
    """A login by a user who is not active yet is new work; an active one's is not refused
    by the active-users limit, an admin's never. Set on the whole auth router: only its
    login asks."""
    if request.method != "POST" or not request.url.path.endswith("/login"):
        return
    user_id = await _login_user(request, ward)
    (await ward.capacity.admit("login", user_id)).check()


async def admit_job(principal: Authenticated, ward: WardDep) -> None:
    (await ward.capacity.admit("job", principal.user_id)).check()


async def admit_websocket(ward: Ward, principal: Principal) -> bool:
    return (await ward.capacity.admit("websocket", principal.user_id)).admitted


async def metrics_response(request: Request, registry: CollectorRegistry) -> PlainTextResponse:
    """``/metrics`` for ``metrics_access="public"``, or for an admin's bearer token."""
    ward: Ward = request.app.state.ward
    if ward.settings.metrics_access != "public":
        await _require_admin(request, ward)
    return PlainTextResponse(render(registry), media_type=CONTENT_TYPE_LATEST)


async def _require_admin(request: Request, ward: Ward) -> None:
    if ward.settings.metrics_access == "port":
        raise ApiError(404, "not_found", "Not found.")
    token = access_token(request, cookie=None)
    if token is None:
        raise unauthorized()
    principal = await ward.auth.authenticate(token)
    user = await ward.users.get(principal.user_id)
    if user is None or not user.is_admin:
        raise ApiError(403, "forbidden", "Only an admin may read the metrics.")


@contextmanager
def metrics_port(ward: Ward, registry: CollectorRegistry) -> Iterator[None]:
    """``metrics_access="port"``: a plain listener on ``host:metrics_port`` (a thread) while
    the app runs. With several workers the first one to bind serves (every worker's values,
    in multiprocess mode); the others find the port taken and leave it to that one."""
    port = ward.settings.metrics_port
    if ward.settings.metrics_access != "port" or not port:
        yield
        return
    try:
        server, thread = start_http_server(port, ward.settings.host, scrape_registry(registry))
    except OSError as exc:
        log.info("the metrics port %d is served by another worker (%s)", port, exc)
        yield
        return
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
