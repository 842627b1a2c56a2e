"""The WebSocket guard in a user's own app, served by a real uvicorn in this event loop on a
loopback port, driven by a real WebSocket client, on SQLite, Redis and PostgreSQL.

What /v1/ws already proves through the guard (tests/service/test_ws.py: the rate, the flood,
invalid frames, the size limit, cross-instance revocation) is not repeated here; these are
the guard's own promises to an app: the body never runs for a refused socket, is cancelled
by a revocation, sees its own exceptions as themselves, and receives the channels it asks for;
and a Redis of the test's own, killed under an open socket, gives ``store_unavailable`` and
then 1013, never a crash.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
import uvicorn
from fastapi import FastAPI, WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from sessionward import Settings
from sessionward.auth.manager import TokenPair
from sessionward.fastapi import GuardedWebSocket, SessionWard, install_handlers
from sessionward.testing.waiting import wait_until_async
from tests.conftest import SHARED_BACKENDS, url_for
from tests.e2e.test_outage import OwnRedis
from tests.service.server import free_port

pytestmark = pytest.mark.anyio
DEADLINE = 5.0
SETTINGS = Settings.defaults(
    secret_key="a test secret of at least thirty-two chars",
    ws_auth_timeout=0.3,
    ws_session_check_interval=0.2,
    argon2_time_cost=1,
    argon2_memory_cost=8,
    argon2_parallelism=1,
)
SHAPES = {"say": frozenset({"text"}), "wait": frozenset({"for"})}


@dataclass
class Served:
    sw: SessionWard
    url: str
    entered: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    handled: list[BaseException] = field(default_factory=list)


def build(store: str) -> tuple[FastAPI, Served]:
    sw = SessionWard(store, settings=SETTINGS, events=True)
    app = FastAPI(lifespan=sw.lifespan)
    install_handlers(app)
    served = Served(sw, "")

    async def lookup_error(websocket: WebSocket, exc: Exception) -> None:
        served.handled.append(exc)
        await websocket.close(1011)

    app.add_exception_handler(LookupError, lookup_error)

    @app.websocket("/ws")
    async def chat(websocket: WebSocket) -> None:
        async with sw.websocket(websocket, shapes=SHAPES, channels=["room"]) as guarded:
            served.entered.append(guarded.session.session_id)
            try:
                await serve(guarded)
            finally:
                served.left.append(guarded.session.session_id)

    async def serve(guarded: GuardedWebSocket) -> None:
        async for message in guarded:
            if message["type"] == "say":
                await guarded.publish({"type": "said", "text": message["text"]})
            elif message["for"] == "crash":
                raise LookupError("the app's own error")
            else:
                await guarded.send_json({"type": "waiting"})
                await anyio.sleep_forever()  # until the guard cancels the body

    return app, served


@pytest.fixture(params=SHARED_BACKENDS)
async def served(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(build(url_for(str(request.param), tmp_path))) as served:
        yield served


@asynccontextmanager
async def serving(built: tuple[FastAPI, Served]) -> AsyncIterator[Served]:
    """The app under a real uvicorn in this event loop, on a free loopback port."""
    app, served = built
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    served.url = f"ws://127.0.0.1:{port}/ws"
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(server.serve)
        await wait_until_async(_started(server), timeout=30, what="uvicorn starting")
        try:
            yield served
        finally:
            server.should_exit = True


def _started(server: uvicorn.Server) -> Any:
    async def check() -> bool:
        return server.started

    return check


@dataclass
class Login:
    user_id: str
    pair: TokenPair

    @property
    def access_token(self) -> str:
        return self.pair.access_token

    @property
    def session_id(self) -> str:
        return self.pair.session_id


async def login(served: Served) -> Login:
    name = f"u{uuid.uuid4().hex[:12]}"
    user = await served.sw.ward.auth.register(name, "a long enough password")
    return Login(user.user_id, await served.sw.ward.auth.login(name, "a long enough password"))


@asynccontextmanager
async def bearer(served: Served, token: str) -> AsyncIterator[ClientConnection]:
    protocols = cast(Any, ["sessionward", "bearer." + token])
    async with connect(served.url, subprotocols=protocols, open_timeout=DEADLINE) as ws:
        yield ws


async def receive(ws: ClientConnection) -> dict[str, Any]:
    with anyio.fail_after(DEADLINE):
        return dict(json.loads(await ws.recv()))


async def close_code(ws: ClientConnection, deadline: float = DEADLINE) -> int | None:
    with anyio.fail_after(deadline):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None


async def test_a_bearer_subprotocol_signs_in_without_echoing_the_token(served: Served) -> None:
    pair = await login(served)
    async with bearer(served, pair.access_token) as ws:
        assert ws.subprotocol == "sessionward"
        assert await receive(ws) == {"type": "ready", "session_id": pair.session_id}
        await ws.send(json.dumps({"type": "say", "text": "hi"}))
        assert await receive(ws) == {"type": "said", "text": "hi"}
    assert served.entered == [pair.session_id]


@pytest.mark.parametrize("how", ["bad subprotocol token", "no auth frame", "revoked session"])
async def test_a_refused_socket_never_runs_the_body(served: Served, how: str) -> None:
    pair = await login(served)
    if how == "revoked session":
        await served.sw.ward.sessions.revoke(pair.user_id, pair.session_id)
    token = "not-a-jwt" if how == "bad subprotocol token" else pair.access_token
    if how == "no auth frame":
        async with connect(served.url, open_timeout=DEADLINE) as ws:
            assert await close_code(ws) == 1008
    else:
        async with bearer(served, token) as ws:
            assert await close_code(ws) == 4401
    assert served.entered == []


async def test_a_revocation_closes_the_socket_and_cancels_the_body(served: Served) -> None:
    pair = await login(served)
    async with bearer(served, pair.access_token) as ws:
        assert (await receive(ws))["type"] == "ready"
        await ws.send(json.dumps({"type": "wait", "for": "revocation"}))
        assert await receive(ws) == {"type": "waiting"}
        started = time.monotonic()
        await served.sw.ward.sessions.revoke(pair.user_id, pair.session_id)
        assert await close_code(ws) == 4401
        assert time.monotonic() - started < 1.0
    await wait_until_async(_left(served, pair.session_id), what="the body ending")


def _left(served: Served, session_id: str) -> Any:
    async def check() -> bool:
        return served.left == [session_id]

    return check


async def test_an_exception_in_the_body_reaches_the_apps_handler_as_itself(
    served: Served,
) -> None:
    pair = await login(served)
    async with bearer(served, pair.access_token) as ws:
        assert (await receive(ws))["type"] == "ready"
        await ws.send(json.dumps({"type": "wait", "for": "crash"}))
        assert await close_code(ws) == 1011
    assert [type(exc) for exc in served.handled] == [LookupError]  # not an ExceptionGroup
    assert served.left == [pair.session_id]


async def test_extra_channels_reach_every_socket_that_asked(served: Served) -> None:
    alice, bob = await login(served), await login(served)
    async with bearer(served, alice.access_token) as a, bearer(served, bob.access_token) as b:
        for ws in (a, b):
            assert (await receive(ws))["type"] == "ready"
        await served.sw.events.publish("room", {"type": "news", "text": "for the room"})
        for ws in (a, b):
            assert await receive(ws) == {"type": "news", "text": "for the room"}
        await a.send(json.dumps({"type": "say", "text": "only alice's"}))  # her channel only
        assert await receive(a) == {"type": "said", "text": "only alice's"}
        await served.sw.events.publish("room", {"type": "news", "text": "next"})
        assert await receive(b) == {"type": "news", "text": "next"}


def test_auth_is_the_guards_own_type() -> None:
    with pytest.raises(ValueError, match="auth"):
        GuardedWebSocket(cast(Any, None), cast(Any, None), shapes={"auth": frozenset()})


# a Redis outage under an open socket


@pytest.fixture
async def on_own_redis(tmp_path: Path) -> AsyncIterator[tuple[Served, OwnRedis]]:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    redis = OwnRedis(free_port(), workdir)
    redis.start()
    try:
        async with serving(build(redis.url("guard"))) as served:
            yield served, redis
    finally:
        if redis.proc is not None and redis.proc.poll() is None:
            redis.kill()


async def test_a_store_outage_answers_store_unavailable_then_closes_1013(
    on_own_redis: tuple[Served, OwnRedis],
) -> None:
    served, redis = on_own_redis
    pair = await login(served)
    async with bearer(served, pair.access_token) as ws:
        assert (await receive(ws))["type"] == "ready"
        redis.kill()
        await ws.send(json.dumps({"type": "say", "text": "into the void"}))
        # the limiter fails closed: the message is dropped, the socket stays open
        assert await receive(ws) == {"type": "error", "code": "store_unavailable"}
        # ten session checks in a row fail: try again later
        assert await close_code(ws, deadline=30) == 1013
    assert served.left == [pair.session_id]
