"""examples/chat_budget run as written: real uvicorn processes, real HTTP and WebSocket.

On SQLite, Redis and PostgreSQL one process; on Redis also two processes sharing the
store, where a chat message and a logout cross from one to the other. Each app allows 6
chat frames a minute per session, so the seventh is refused however fast this machine is.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import SHARED_BACKENDS, url_for

from .chat_app import DEADLINE, PASSWORD, App, start_app

pytestmark = pytest.mark.anyio

revocation_times: list[float] = []


@pytest.fixture(scope="module", params=SHARED_BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    workdir = tmp_path_factory.mktemp("chat")
    started = start_app(url_for(str(request.param), workdir), workdir)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, App]]:
    """Two processes of the example on one Redis store."""
    workdir = tmp_path_factory.mktemp("chat-twins")
    store = url_for("redis", workdir)
    one = start_app(store, workdir)
    try:
        two = start_app(store, workdir)
    except BaseException:
        one.stop()
        raise
    yield one, two
    one.stop()
    two.stop()


@pytest.fixture(scope="module", autouse=True)
def _report_revocation_times() -> Iterator[None]:
    yield
    if revocation_times:
        print(
            "\nchat_budget: close after logout:", [f"{t * 1000:.0f} ms" for t in revocation_times]
        )


# clients


async def signed_up(app: App) -> dict[str, str]:
    name = f"u{uuid.uuid4().hex[:12]}"
    async with httpx.AsyncClient(base_url=app.url, timeout=30) as client:
        body = {"username": name, "password": PASSWORD}
        assert (await client.post("/register", json=body)).status_code == 201
    return {"username": name, **(await logged_in(app, name))}


async def logged_in(app: App, name: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=app.url, timeout=30) as client:
        login = await client.post("/login", json={"username": name, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return dict(login.json())


async def logout(app: App, tokens: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=app.url, timeout=30) as client:
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert (await client.post("/logout", headers=headers)).status_code == 204


def ws_url(app: App) -> str:
    return app.url.replace("http://", "ws://", 1) + "/ws"


@asynccontextmanager
async def chat(app: App, tokens: dict[str, str]) -> AsyncIterator[ClientConnection]:
    """A socket signed in as the page does it: the token in a subprotocol."""
    protocols: Any = ["sessionward", "bearer." + tokens["access_token"]]
    async with connect(ws_url(app), subprotocols=protocols, open_timeout=DEADLINE) as ws:
        assert ws.subprotocol == "sessionward"  # the token is never echoed
        assert await receive(ws) == {"type": "ready", "session_id": tokens["session_id"]}
        assert await receive(ws) == {"type": "budget", "remaining": 600, "limit": 600}
        yield ws


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def receive(ws: ClientConnection) -> dict[str, Any]:
    with anyio.fail_after(DEADLINE):
        return dict(json.loads(await ws.recv()))


async def until_closed(ws: ClientConnection) -> tuple[list[dict[str, Any]], int | None]:
    frames: list[dict[str, Any]] = []
    with anyio.fail_after(DEADLINE):
        try:
            while True:
                frames.append(json.loads(await ws.recv()))
        except ConnectionClosed as closed:
            return frames, closed.rcvd.code if closed.rcvd else None


async def order(ws: ClientConnection, order_id: str) -> dict[str, Any]:
    await send(ws, {"type": "order", "test": "blood count", "order_id": order_id})
    return await receive(ws)


# the page and the login


async def test_the_page_is_served(app: App) -> None:
    async with httpx.AsyncClient(base_url=app.url) as client:
        page = await client.get("/")
    assert page.status_code == 200 and "Order a test" in page.text


async def test_failed_logins_lock_the_account_and_say_so(app: App) -> None:
    tokens = await signed_up(app)
    async with httpx.AsyncClient(base_url=app.url, timeout=30) as client:
        wrong = {"username": tokens["username"], "password": "not the password"}
        for _ in range(3):
            answer = await client.post("/login", json=wrong)
            assert answer.status_code == 401
            assert answer.json()["error"]["code"] == "invalid_credentials"
        right = {"username": tokens["username"], "password": PASSWORD}
        locked = await client.post("/login", json=right)
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "locked_out"
    assert int(locked.headers["Retry-After"]) > 0


async def test_a_bad_token_closes_4401_and_no_auth_closes_1008(app: App) -> None:
    async with connect(ws_url(app), open_timeout=DEADLINE) as ws:
        await send(ws, {"type": "auth", "access_token": "not-a-jwt"})
        assert await until_closed(ws) == ([], 4401)
    async with connect(ws_url(app), open_timeout=DEADLINE) as ws:
        assert await until_closed(ws) == ([], 1008)


async def test_the_auth_frame_works_as_well_as_the_subprotocol(app: App) -> None:
    tokens = await signed_up(app)
    async with connect(ws_url(app), open_timeout=DEADLINE) as ws:
        await send(ws, {"type": "auth", "access_token": tokens["access_token"]})
        assert await receive(ws) == {"type": "ready", "session_id": tokens["session_id"]}
        assert (await receive(ws))["type"] == "budget"


# the budget


async def test_orders_are_charged_once_each_and_stop_at_the_budget(app: App) -> None:
    tokens = await signed_up(app)
    async with chat(app, tokens) as ws:
        first = await order(ws, "order-1")
        assert first == {"type": "ordered", "test": "blood count", "order_id": "order-1",
                         "replayed": False}  # fmt: skip
        assert await receive(ws) == {"type": "budget", "remaining": 350, "limit": 600}
        again = await order(ws, "order-1")  # a resend: the same charge, not a second one
        assert again["replayed"] is True
        assert await receive(ws) == {"type": "budget", "remaining": 350, "limit": 600}
        assert (await order(ws, "order-2"))["replayed"] is False
        assert await receive(ws) == {"type": "budget", "remaining": 100, "limit": 600}
        refused = await order(ws, "order-3")
        assert refused == {"type": "error", "code": "budget_exceeded", "remaining": 100}
        assert (await order(ws, ""))["code"] == "invalid_message"  # an empty idempotency key
    # the budget is the session's: a new login starts afresh
    fresh = await logged_in(app, tokens["username"])
    async with chat(app, fresh) as ws:
        assert (await order(ws, "order-1"))["replayed"] is False


async def test_the_chat_rate_is_per_session_and_shown(app: App) -> None:
    tokens = await signed_up(app)
    async with chat(app, tokens) as ws:
        for n in range(7):
            await send(ws, {"type": "say", "text": f"m{n}"})
        frames = [await receive(ws) for _ in range(7)]
    said = [f["text"] for f in frames if f["type"] == "chat"]
    refused = [f for f in frames if f["type"] == "error"]
    assert said == [f"m{n}" for n in range(6)]
    assert len(refused) == 1 and refused[0]["code"] == "rate_limited"
    assert 0 < refused[0]["retry_after"] <= 10


async def test_invalid_frames_are_answered_and_keep_the_socket(app: App) -> None:
    tokens = await signed_up(app)
    async with chat(app, tokens) as ws:
        for frame in ['{"type": "message", "text": "hi"}', '{"type": "order", "test": "x"}',
                      "not json", '{"type": "auth", "access_token": "again"}']:  # fmt: skip
            await ws.send(frame)
            assert await receive(ws) == {"type": "error", "code": "invalid_message"}
        await send(ws, {"type": "say", "text": "still here"})
        assert (await receive(ws))["text"] == "still here"


# revocation


async def test_logout_closes_the_socket_within_a_second(app: App) -> None:
    tokens = await signed_up(app)
    async with chat(app, tokens) as ws:
        assert await closed_after_logout(ws, app, tokens) < 1.0


async def closed_after_logout(ws: ClientConnection, app: App, tokens: dict[str, str]) -> float:
    started = time.monotonic()
    await logout(app, tokens)
    frames, code = await until_closed(ws)
    elapsed = time.monotonic() - started
    assert (frames, code) == ([], 4401)
    revocation_times.append(elapsed)
    return elapsed


# two processes on one Redis


async def test_a_message_crosses_to_the_other_process(twins: tuple[App, App]) -> None:
    one, two = twins
    alice, bob = await signed_up(one), await signed_up(two)
    async with chat(one, alice) as a, chat(two, bob) as b:
        await send(a, {"type": "say", "text": "hello from one"})
        expected = {"type": "chat", "from": alice["username"], "text": "hello from one"}
        assert await receive(b) == expected
        assert await receive(a) == expected
        await send(b, {"type": "say", "text": "hello from two"})
        assert (await receive(a))["text"] == "hello from two"


async def test_a_logout_on_one_process_closes_the_socket_on_the_other(
    twins: tuple[App, App],
) -> None:
    one, two = twins
    tokens = await signed_up(one)
    kept = await logged_in(one, tokens["username"])
    async with chat(two, tokens) as ws, chat(two, kept) as other:
        assert await closed_after_logout(ws, one, tokens) < 1.0
        await send(other, {"type": "say", "text": "still open"})
        assert (await receive(other))["text"] == "still open"
