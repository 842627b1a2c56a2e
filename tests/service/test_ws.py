"""The WebSocket endpoint through real servers and a real WebSocket client.

Every server runs with a rate of 5 messages a minute per session: the burst of 5 is spent at
once and the next slot is 12 s away, so a flood's outcome does not depend on how fast this
machine is. Waits are deadlines on frames; the only polls are for a killed listener's
reconnection, which the protocol cannot show.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import anyio
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import SHARED_BACKENDS, url_for

from .server import Server, start
from .test_flows import PASSWORD

pytestmark = pytest.mark.anyio

MAX_BYTES = 4096
WS_ENV = {
    "SESSIONWARD_WS_RATE_LIMIT": "5/minute",
    "SESSIONWARD_WS_AUTH_TIMEOUT": "0.3",
    "SESSIONWARD_WS_MAX_MESSAGE_BYTES": str(MAX_BYTES),
    "SESSIONWARD_LOGIN_IP_MAX_FAILURES": "100000",
    "PYTHONWARNINGS": "default::ResourceWarning",
}
DEADLINE = 5.0
revocation_times: dict[str, list[float]] = {}


def _started(url: str, workdir: Path, count: int = 1, workers: int = 1) -> list[Server]:
    servers: list[Server] = []
    try:
        for _ in range(count):
            servers.append(start(url, workdir, workers=workers, **WS_ENV))
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def _stopped_cleanly(servers: list[Server], *, resources: bool = True) -> None:
    for server in servers:
        server.stop()
    signs = ["Traceback", "Exception in ASGI", "never awaited"]
    signs += ["ResourceWarning"] if resources else []
    for server in servers:
        log = server.log.read_text()
        for sign in signs:
            assert sign not in log, f"{sign} in {server.log}:\n{log[-3000:]}"


@pytest.fixture(scope="module", params=SHARED_BACKENDS)
def ws_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("ws")
    servers = _started(url_for(str(request.param), workdir), workdir)
    yield servers[0]
    _stopped_cleanly(servers)


@pytest.fixture(scope="module", params=["redis", "postgresql"])
def twins(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    """Two instances on one store URL."""
    workdir = tmp_path_factory.mktemp("twins")
    servers = _started(url_for(str(request.param), workdir), workdir, count=2)
    yield servers[0], servers[1]
    _stopped_cleanly(servers)


@pytest.fixture(scope="module")
def sqlite_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server of two worker processes on one SQLite file."""
    workdir = tmp_path_factory.mktemp("workers")
    servers = _started(url_for("sqlite", workdir), workdir, workers=2)
    yield servers[0]
    # uvicorn's supervisor process leaves its listening socket to the garbage collector
    _stopped_cleanly(servers, resources=False)


@pytest.fixture(scope="module", autouse=True)
def _report_revocation_times() -> Iterator[None]:
    yield
    for backend, times in sorted(revocation_times.items()):
        shown = ", ".join(f"{t * 1000:.0f}" for t in times)
        print(f"\nclose after logout, {backend}: {shown} ms")


def backend_of(server: Server) -> str:
    return server.env["SESSIONWARD_STORE"].split(":", 1)[0]


# clients


@asynccontextmanager
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


async def signed_up(server: Server, name: str) -> dict[str, Any]:
    async with http(server) as client:
        body = {"username": name, "password": PASSWORD}
        assert (await client.post("/v1/auth/register", json=body)).status_code == 201
    return await logged_in(server, name)


async def logged_in(server: Server, name: str) -> dict[str, Any]:
    async with http(server) as client:
        body = {"username": name, "password": PASSWORD}
        login = await client.post("/v1/auth/login", json=body)
    assert login.status_code == 200, login.text
    return dict(login.json())


async def logout(server: Server, tokens: dict[str, Any]) -> None:
    async with http(server) as client:
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert (await client.post("/v1/auth/logout", headers=headers)).status_code == 204


def ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://", 1) + "/v1/ws"


@asynccontextmanager
async def socket(server: Server) -> AsyncIterator[ClientConnection]:
    async with connect(ws_url(server), open_timeout=DEADLINE, close_timeout=DEADLINE) as ws:
        yield ws


@asynccontextmanager
async def ready(server: Server, tokens: dict[str, Any]) -> AsyncIterator[ClientConnection]:
    async with socket(server) as ws:
        await send(ws, {"type": "auth", "access_token": tokens["access_token"]})
        assert await receive(ws) == {"type": "ready", "session_id": tokens["session_id"]}
        yield ws


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message, ensure_ascii=False))


async def say(ws: ClientConnection, text: str) -> None:
    await send(ws, {"type": "message", "text": text})


async def receive(ws: ClientConnection) -> dict[str, Any]:
    with anyio.fail_after(DEADLINE):
        return dict(json.loads(await ws.recv()))


async def heard(ws: ClientConnection) -> str:
    """The text of the next frame, which must be a message."""
    frame = await receive(ws)
    assert frame["type"] == "message" and set(frame) == {"type", "text", "at"}, frame
    return str(frame["text"])


async def until_closed(ws: ClientConnection) -> tuple[list[dict[str, Any]], int | None]:
    """Every frame the server sends before it closes, and its close code."""
    frames: list[dict[str, Any]] = []
    with anyio.fail_after(DEADLINE):
        try:
            while True:
                frames.append(json.loads(await ws.recv()))
        except ConnectionClosed as closed:
            return frames, closed.rcvd.code if closed.rcvd else None


async def closed_after_logout(
    ws: ClientConnection, server: Server, tokens: dict[str, Any]
) -> float:
    """Log out through ``server``; return how long until ``ws`` was closed with 4401."""
    started = time.monotonic()
    await logout(server, tokens)
    frames, code = await until_closed(ws)
    elapsed = time.monotonic() - started
    assert (frames, code) == ([], 4401)
    revocation_times.setdefault(backend_of(server), []).append(elapsed)
    return elapsed


# authentication


async def test_auth_is_answered_with_ready(ws_server: Server, name: str) -> None:
    tokens = await signed_up(ws_server, name)
    async with ready(ws_server, tokens) as ws:
        await say(ws, "hello")
        assert await heard(ws) == "hello"


@pytest.mark.parametrize("good", [True, False])
async def test_a_bearer_subprotocol_replaces_the_auth_frame(
    ws_server: Server, name: str, good: bool
) -> None:
    tokens = await signed_up(ws_server, name)
    token = tokens["access_token"] if good else "not-a-jwt"
    protocols = cast(Any, ["sessionward", "bearer." + token])
    async with connect(ws_url(ws_server), subprotocols=protocols, open_timeout=DEADLINE) as ws:
        assert ws.subprotocol == "sessionward"  # never the token
        if not good:
            assert await until_closed(ws) == ([], 4401)
            return
        assert await receive(ws) == {"type": "ready", "session_id": tokens["session_id"]}
        await say(ws, "no auth frame")
        assert await heard(ws) == "no auth frame"


async def test_no_auth_in_time_closes_1008(ws_server: Server) -> None:
    async with socket(ws_server) as ws:
        started = time.monotonic()
        assert await until_closed(ws) == ([], 1008)
        assert 0.25 < time.monotonic() - started < 3


async def test_first_message_must_be_auth(ws_server: Server) -> None:
    async with socket(ws_server) as ws:
        await send(ws, {"type": "message", "text": "hi"})
        assert await until_closed(ws) == ([], 1008)


@pytest.mark.parametrize("token", ["not-a-jwt", "tampered"])
async def test_bad_token_closes_4401(ws_server: Server, name: str, token: str) -> None:
    if token == "tampered":
        real = (await signed_up(ws_server, name))["access_token"]
        token = real[:-4] + ("AAAA" if real[-4:] != "AAAA" else "BBBB")
    async with socket(ws_server) as ws:
        await send(ws, {"type": "auth", "access_token": token})
        assert await until_closed(ws) == ([], 4401)


async def test_logged_out_session_token_closes_4401(ws_server: Server, name: str) -> None:
    tokens = await signed_up(ws_server, name)
    await logout(ws_server, tokens)
    async with socket(ws_server) as ws:
        await send(ws, {"type": "auth", "access_token": tokens["access_token"]})
        assert await until_closed(ws) == ([], 4401)


# messages


async def test_echo_reaches_every_connection_of_the_user_and_no_other(
    ws_server: Server, name: str
) -> None:
    first = await signed_up(ws_server, name + "a")
    second = await logged_in(ws_server, name + "a")
    other = await signed_up(ws_server, name + "b")
    async with (
        ready(ws_server, first) as a1,
        ready(ws_server, second) as a2,
        ready(ws_server, other) as b,
    ):
        await say(a1, "for alice")
        for ws in (a1, a2):
            frame = await receive(ws)
            assert frame["type"] == "message" and frame["text"] == "for alice"
            at = datetime.fromisoformat(frame["at"])
            assert frame["at"].endswith("Z") and at.utcoffset() == timedelta(0)
            assert abs((datetime.now(UTC) - at).total_seconds()) < 60
        # b's channel is in order: had alice's message reached it, it would come first
        await say(b, "for bob")
        assert await heard(b) == "for bob"


async def test_flood_is_limited_then_closed_1008(ws_server: Server, name: str) -> None:
    watcher_tokens = await signed_up(ws_server, name)
    flooder_tokens = await logged_in(ws_server, name)
    async with ready(ws_server, watcher_tokens) as watcher:
        async with ready(ws_server, flooder_tokens) as flooder:
            for n in range(30):
                await say(flooder, f"m{n}")
            frames, code = await until_closed(flooder)
        assert code == 1008
        errors = [f for f in frames if f["type"] == "error"]
        assert len(errors) == 10
        for error in errors:
            assert set(error) == {"type", "code", "retry_after"}
            assert error["code"] == "rate_limited" and 0 < error["retry_after"] <= 12
        echoed = [f["text"] for f in frames if f["type"] == "message"]
        assert echoed == [f"m{n}" for n in range(len(echoed))] and len(echoed) <= 5
        assert [await heard(watcher) for _ in range(5)] == [f"m{n}" for n in range(5)]
        await say(watcher, "after")  # the watcher's session has its own budget
        assert await heard(watcher) == "after"  # and nothing past m4 came before it


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        '"text"',
        "{}",
        '{"type": "nope"}',
        '{"type": "message"}',
        '{"type": "message", "text": 1}',
        '{"type": "message", "text": "hi", "extra": true}',
        '{"type": "message", "text": NaN}',
        '{"type": "message", "text": "\\ud800"}',
        '{"type": ["message"], "text": "hi"}',
        '{"type": "auth", "access_token": "again"}',
        b'{"type": "message", "text": "binary"}',
    ],
)
async def test_invalid_frames_are_answered_and_keep_the_socket(
    ws_server: Server, name: str, frame: str | bytes
) -> None:
    tokens = await signed_up(ws_server, name)
    async with ready(ws_server, tokens) as ws:
        for _ in range(2):
            await ws.send(frame)
            assert await receive(ws) == {"type": "error", "code": "invalid_message"}
        await say(ws, "still here")
        assert await heard(ws) == "still here"


async def test_frame_above_the_limit_closes_1009(ws_server: Server, name: str) -> None:
    tokens = await signed_up(ws_server, name)
    envelope = len(json.dumps({"type": "message", "text": ""}))
    async with ready(ws_server, tokens) as ws:
        fits = "é" * ((MAX_BYTES - envelope) // 2)  # two bytes each in UTF-8
        await say(ws, fits)
        assert await heard(ws) == fits
        too_big = "x" * (MAX_BYTES - envelope + 1)
        await say(ws, too_big)
        assert await until_closed(ws) == ([], 1009)


# revocation


async def test_logout_closes_the_socket_within_a_second(ws_server: Server, name: str) -> None:
    tokens = await signed_up(ws_server, name)
    other = await logged_in(ws_server, name)
    async with ready(ws_server, tokens) as ws, ready(ws_server, other) as kept:
        assert await closed_after_logout(ws, ws_server, tokens) < 1.0
        await say(kept, "still open")
        assert await heard(kept) == "still open"


async def test_logout_closes_a_socket_of_another_sqlite_worker(
    sqlite_workers: Server, name: str
) -> None:
    tokens = await signed_up(sqlite_workers, name)
    async with ready(sqlite_workers, tokens) as ws:
        assert await closed_after_logout(ws, sqlite_workers, tokens) < 1.0


# across instances


async def test_message_reaches_the_user_on_another_instance(
    twins: tuple[Server, Server], name: str
) -> None:
    one, two = twins
    tokens = await signed_up(one, name)
    elsewhere = await logged_in(two, name)
    stranger = await signed_up(two, name + "x")
    async with ready(one, tokens) as a, ready(two, elsewhere) as b, ready(two, stranger) as c:
        await say(a, "across")
        assert await heard(b) == "across"
        assert await heard(a) == "across"
        big = "é" * 2000  # 4 kB in UTF-8, 12 kB escaped: chunked past NOTIFY's 8000 bytes
        await say(b, big)
        assert await heard(a) == big
        assert await heard(b) == big
        await say(c, "mine")
        assert await heard(c) == "mine"


async def test_logout_on_one_instance_closes_the_socket_on_another(
    twins: tuple[Server, Server], name: str
) -> None:
    one, two = twins
    tokens = await signed_up(one, name)
    other = await logged_in(one, name)
    async with ready(two, tokens) as ws, ready(two, other) as kept:
        assert await closed_after_logout(ws, one, tokens) < 1.0
        await say(kept, "still open")
        assert await heard(kept) == "still open"


async def test_a_killed_listener_reconnects(twins: tuple[Server, Server], name: str) -> None:
    one, two = twins
    tokens = await signed_up(one, name)
    elsewhere = await logged_in(two, name)
    store = one.env["SESSIONWARD_STORE"]
    killed = await kill_listeners(store)
    assert len(killed) == 2  # one per instance
    await listening_again(store, killed)
    async with ready(one, tokens) as a, ready(two, elsewhere) as b:
        await say(a, "after the reconnect")
        assert await heard(b) == "after the reconnect"


# the listeners, seen from the store's server


async def kill_listeners(store: str) -> set[str]:
    return await anyio.to_thread.run_sync(_listeners, store, True)


async def listening_again(store: str, killed: set[str]) -> None:
    with anyio.fail_after(15):
        while True:
            now = await anyio.to_thread.run_sync(_listeners, store, False)
            if len(now) == 2 and not now & killed:
                return
            await anyio.sleep(0.05)  # polling the store's server, bounded by the deadline


def _listeners(store: str, kill: bool) -> set[str]:
    if store.startswith("redis"):
        return _redis_listeners(store, kill)
    return _postgres_listeners(store, kill)


def _redis_listeners(store: str, kill: bool) -> set[str]:
    import redis

    from sessionward.stores.redis.events import listener_name
    from sessionward.urls import RedisOptions, parse_store_url

    options = parse_store_url(store).options
    assert isinstance(options, RedisOptions)
    name = listener_name(options.key_prefix)
    client = redis.Redis.from_url(store.split("?")[0], decode_responses=True)
    try:
        ids = {
            str(c["id"])
            for c in cast(list[dict[str, Any]], client.client_list())
            if c.get("name") == name and c.get("sub", "0") != "0"  # subscribed
        }
        for client_id in ids if kill else ():
            client.client_kill_filter(_id=client_id)
        return ids
    finally:
        client.close()


def _postgres_listeners(store: str, kill: bool) -> set[str]:
    import psycopg

    from sessionward.stores.postgres.events import wire_channel
    from sessionward.urls import PostgresOptions, parse_store_url

    options = parse_store_url(store).options
    assert isinstance(options, PostgresOptions)
    listen = f'LISTEN "{wire_channel(options.schema_name)}"'
    with psycopg.connect(store.split("?")[0], autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE query = %s AND state = 'idle'", (listen,)
        ).fetchall()
        for (pid,) in rows if kill else ():
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    return {str(pid) for (pid,) in rows}
