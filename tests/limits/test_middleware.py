"""The ASGI middleware in front of a tiny app on a memory store: which rule decides, who is
counted, and that no request, however long its path, turns into a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from sessionward import open_ward
from sessionward.web.limits import RateLimitMiddleware, Rule, by_ip, by_route

pytestmark = pytest.mark.anyio


async def _ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def _nobody(request: Request) -> str | None:
    return None


async def _app(rules: Sequence[Rule]) -> AsyncIterator[httpx.AsyncClient]:
    async with open_ward("memory://", sweep=False) as ward:
        app = Starlette(
            routes=[Route("/{path:path}", _ok, methods=["GET", "POST"])],
            middleware=[Middleware(RateLimitMiddleware, limiter=ward.limits, rules=rules)],
        )
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            yield client


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    rules = [
        Rule("/free", None),
        Rule("/anonymous", "2/hour", key=_nobody),
        Rule("/per-path/*", "2/hour", key=by_route(by_ip()), name="path"),
        Rule("/*", "2/hour", methods=frozenset({"POST"}), name="writes"),
        Rule("/*", "3/hour", name="rest"),
    ]
    async for each in _app(rules):
        yield each


async def statuses(client: httpx.AsyncClient, method: str, path: str, n: int) -> list[int]:
    return [(await client.request(method, path)).status_code for _ in range(n)]


async def test_the_first_matching_rule_decides(client: httpx.AsyncClient) -> None:
    assert await statuses(client, "POST", "/a", 3) == [200, 200, 429]
    assert (await client.post("/b")).headers["RateLimit-Policy"] == '"writes";q=2;w=3600'
    assert await statuses(client, "GET", "/a", 4) == [200, 200, 200, 429]
    assert (await client.get("/c")).headers["RateLimit-Policy"] == '"rest";q=3;w=3600'


async def test_exempt_rules_and_nobody_pass_unlimited(client: httpx.AsyncClient) -> None:
    for path in ("/free", "/anonymous"):
        for answer in [await client.get(path) for _ in range(5)]:
            assert answer.status_code == 200 and "RateLimit" not in answer.headers


async def test_by_route_counts_each_path_apart(client: httpx.AsyncClient) -> None:
    assert await statuses(client, "GET", "/per-path/a", 3) == [200, 200, 429]
    assert await statuses(client, "GET", "/per-path/b", 3) == [200, 200, 429]


@pytest.mark.parametrize("length", [400, 600, 5000])
async def test_a_long_path_is_limited_like_any_other(
    client: httpx.AsyncClient, length: int
) -> None:
    # by_route puts the path in the key; a client chooses the path
    path = "/per-path/" + "a" * length
    assert await statuses(client, "GET", path, 3) == [200, 200, 429]


async def test_requests_without_a_peer_address_share_one_ip_count() -> None:
    async with open_ward("memory://", sweep=False) as ward:
        limited = RateLimitMiddleware(
            PlainTextResponse("ok"), limiter=ward.limits, rules=[Rule("/*", "2/hour", key=by_ip())]
        )

        async def no_peer(scope: Scope, receive: Receive, send: Send) -> None:
            await limited({**scope, "client": None}, receive, send)  # as behind a Unix socket

        transport = httpx.ASGITransport(app=no_peer)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            assert await statuses(client, "GET", "/login", 3) == [200, 200, 429]
