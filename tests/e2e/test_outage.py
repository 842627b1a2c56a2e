"""A Redis outage under load: limits fail as told, nothing answers 500, and once Redis is
back limiting resumes by itself within 2 s.

Each test runs a ``redis-server`` of its own on a free loopback port (no persistence), kills
it by its pid while requests run, and starts it again on the same port.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from sessionward import StorageUnavailable, open_ward
from sessionward.limits import Decision, RateLimiter
from sessionward.web.limits import RateLimitMiddleware, Rule
from tests.service.server import free_port, start
from tests.service.test_flows import assert_error, bearer, signed_up

RECOVERY = 2.0  # seconds from Redis answering again to real decisions


@dataclass
class OwnRedis:
    """A redis-server of this test's own, stopped (killed) and started by its pid."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    def url(self, prefix: str) -> str:
        return f"redis://127.0.0.1:{self.port}/0?key_prefix={prefix}&socket_timeout=2"

    def start(self) -> float:
        """Start it; return the monotonic time at which it first answered PING."""
        argv = ["redis-server", "--save", "", "--appendonly", "no", "--port", str(self.port),
                "--bind", "127.0.0.1", "--daemonize", "no"]  # fmt: skip
        with open(self.workdir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=self.workdir, stdout=log, stderr=log)
        until = time.monotonic() + 10
        while time.monotonic() < until:
            if self.proc.poll() is not None:
                raise RuntimeError((self.workdir / "redis.log").read_text()[-2000:])
            if self._pong():
                return time.monotonic()
            time.sleep(0.005)  # polling a subprocess's port; the deadline bounds it
        raise RuntimeError(f"redis-server did not answer on port {self.port} within 10 s")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = OwnRedis(free_port(), workdir)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


# The library: RateLimiter on that Redis.


async def _until_real(limits: RateLimiter, key: str, policy: str, back: float) -> Decision:
    while time.monotonic() < back + RECOVERY:
        decision = await limits.hit(key, policy, fail="open")
        if not decision.degraded:
            return decision
        await anyio.sleep(0.01)  # polling; the deadline bounds it
    raise AssertionError(f"still degraded {RECOVERY} s after Redis came back")


@pytest.mark.anyio
async def test_the_limiter_fails_as_told_and_recovers_by_itself(own_redis: OwnRedis) -> None:
    policy = "3/hour"
    async with open_ward(own_redis.url("lib"), sweep=False) as ward:
        limits = ward.limits
        first = await limits.hit("k", policy)
        assert (first.allowed, first.remaining, first.degraded) == (True, 2, False)
        own_redis.kill()
        opened = [await limits.hit("k", policy, fail="open") for _ in range(5)]
        assert all(d.allowed and d.degraded for d in opened)
        assert [d.remaining for d in opened] == [3] * 5  # blind: the whole burst
        for _ in range(3):
            with pytest.raises(StorageUnavailable):
                await limits.hit("k", policy, fail="closed")
        with pytest.raises(StorageUnavailable):
            await limits.enforce("k", policy)  # closed by default
        stats = limits.stats
        assert (stats.failed_open, stats.failed_closed) == (5, 4)
        # after a failure the limiter stops asking the store for a moment
        assert 1 <= stats.store_errors < stats.failed_open + stats.failed_closed
        back = own_redis.start()
        real = await _until_real(limits, "k", policy, back)
        recovered = time.monotonic() - back
        print(f"library recovery: {recovered:.3f} s")
        assert recovered < RECOVERY
        # real decisions again: Redis came back empty, so the key starts over, and counts
        assert (real.allowed, real.remaining) == (True, 2)
        failed_open = limits.stats.failed_open
        after = [await limits.hit("k", policy, fail="open") for _ in range(3)]
        assert [(d.allowed, d.degraded) for d in after] == [(True, False)] * 2 + [(False, False)]
        assert limits.stats.failed_open == failed_open


# The middleware: a tiny app whose handlers never touch the store.


async def _ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@pytest.fixture
async def tiny_app(own_redis: OwnRedis) -> AsyncIterator[httpx.AsyncClient]:
    async with open_ward(own_redis.url("mw"), sweep=False) as ward:
        rules = [Rule("/open", "3/hour", fail="open", name="open"),
                 Rule("/closed", "3/hour", fail="closed", name="closed")]  # fmt: skip
        app = Starlette(
            routes=[Route("/open", _ok), Route("/closed", _ok)],
            middleware=[Middleware(RateLimitMiddleware, limiter=ward.limits, rules=rules)],
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            yield client


@pytest.mark.anyio
async def test_the_middleware_allows_open_refuses_closed_and_recovers(
    own_redis: OwnRedis, tiny_app: httpx.AsyncClient
) -> None:
    assert (await tiny_app.get("/open")).headers["RateLimit"] == '"open";r=2;t=1200'
    own_redis.kill()
    for _ in range(5):
        opened = await tiny_app.get("/open")
        assert (opened.status_code, opened.text) == (200, "ok")  # the handler ran
        assert opened.headers["RateLimit"] == '"open";r=3;t=0'  # a blind decision
        closed = await tiny_app.get("/closed")
        assert_error(closed, 503, "store_unavailable")
        assert closed.headers["Retry-After"] == "1" and closed.json()["error"]["retry_after"] == 1
    back = own_redis.start()
    while (answer := await tiny_app.get("/closed")).status_code == 503:
        assert time.monotonic() < back + RECOVERY, "still unavailable 2 s after Redis came back"
        await anyio.sleep(0.01)  # polling; the deadline bounds it
    print(f"middleware recovery: {time.monotonic() - back:.3f} s")
    assert answer.status_code == 200 and answer.headers["RateLimit"] == '"closed";r=2;t=1200'
    statuses = [(await tiny_app.get("/open")).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]  # limiting again (Redis came back empty)


# The service: a real server on that Redis, with load running through the outage.


@dataclass
class Load:
    """Requests from a thread, none of them on the sign-in routes, until told to stop."""

    url: str
    headers: dict[str, str]
    statuses: Counter[int] = field(default_factory=Counter)  # read it once the load stopped
    failures: list[str] = field(default_factory=list)
    answers: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(60)
        assert not self._thread.is_alive()

    def more(self, answers: int, within: float = 30) -> None:
        """Wait until the load has had ``answers`` more answers."""
        target, until = self.answers + answers, time.monotonic() + within
        while self.answers < target:
            assert time.monotonic() < until, f"the load got {self.answers} answers"
            time.sleep(0.005)  # polling another thread's progress; the deadline bounds it

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as client:
            calls = [
                lambda: client.get("/v1/sessions"),
                lambda: client.put("/v1/state/user/load", json={"data": 1}),
                lambda: client.get("/v1/no-such-route"),
                lambda: client.get("/v1/health"),
            ]
            n = 0
            while not self._stop.is_set():
                try:
                    self.statuses[calls[n % len(calls)]().status_code] += 1
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                n += 1
                self.answers = n


def assert_unavailable(response: httpx.Response) -> None:
    error = assert_error(response, 503, "store_unavailable")
    assert response.headers["Retry-After"] == str(error["retry_after"]) == "1"


def test_the_service_rides_out_a_redis_outage(own_redis: OwnRedis, tmp_path: Path) -> None:
    server = start(own_redis.url("svc"), tmp_path, SESSIONWARD_METRICS_ACCESS="public",
                   SESSIONWARD_IP_RATE_LIMIT="5/hour",
                   SESSIONWARD_API_RATE_LIMIT="100000/hour")  # fmt: skip
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            auth = bearer(signed_up(client, "alice"))
            assert client.put("/v1/state/user/doc", json={"data": 1}, headers=auth).is_success
            with Load(server.url, auth) as load:
                load.more(20)
                own_redis.kill()
                load.more(20)
                _during_the_outage(client, auth)
                back = own_redis.start()
                _limiting_resumes(client, back)
                load.more(20)
            assert not load.failures, load.failures[:5]
            assert 503 in load.statuses and 200 in load.statuses
            assert set(load.statuses) <= {200, 401, 404, 503}, load.statuses
            assert 'status="500"' not in client.get("/metrics").text
    finally:
        server.stop()
    log = server.log.read_text()
    assert "Traceback" not in log and "internal_error" not in log, log[-3000:]


def _during_the_outage(client: httpx.Client, auth: dict[str, str]) -> None:
    body = {"username": "alice", "password": "whatever it is"}
    # fail closed: sign-in and writes are refused by the limiter, with a time to come back
    assert_unavailable(client.post("/v1/auth/login", json=body))
    assert_unavailable(client.post("/v1/auth/register", json=body))
    assert_unavailable(client.put("/v1/state/user/doc", json={"data": 2}, headers=auth))
    assert_unavailable(client.post("/v1/auth/logout", headers=auth))
    # fail open: the limiter lets reads through (its headers say so); the app answers
    missing = client.get("/v1/no-such-route", headers=auth)
    assert_error(missing, 404, "not_found")
    assert missing.headers["RateLimit"] == '"api";r=100000;t=0'
    read = client.get("/v1/sessions", headers=auth)  # the handler itself needs the store
    assert_unavailable(read)
    assert read.headers["RateLimit"] == '"api";r=100000;t=0'
    assert client.get("/v1/health").status_code == 200
    assert_unavailable(client.get("/v1/ready"))


def _limiting_resumes(client: httpx.Client, back: float) -> None:
    while (answer := client.post("/v1/auth/register", json={})).status_code == 503:
        assert time.monotonic() < back + RECOVERY, "still unavailable 2 s after Redis came back"
        time.sleep(0.01)  # polling; the deadline bounds it
    print(f"service recovery: {time.monotonic() - back:.3f} s")
    # Redis came back empty: the address has its whole budget of 5 again, then no more
    answers = [answer] + [client.post("/v1/auth/register", json={}) for _ in range(5)]
    assert [a.status_code for a in answers] == [422] * 5 + [429]
    assert [a.headers["RateLimit"] for a in answers[:5]] == [
        f'"ip";r={r};t={720 * (5 - r)}' for r in range(4, -1, -1)
    ]
    assert_error(answers[-1], 429, "rate_limited")
