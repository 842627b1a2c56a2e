"""The service's rate limits through real servers: the IETF draft headers, 429 answers,
who is counted (IP for sign-in, user for the API), exempt endpoints, and one limit shared
by several instances on one store."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import url_for

from .server import Server, start
from .test_flows import PASSWORD, assert_error, bearer

_NAME = r'"[a-z0-9-]+"'
_QUOTA = rf"{_NAME};q=[1-9][0-9]*;w=[1-9][0-9]*"
_STATE = rf"{_NAME};r=(?:0|[1-9][0-9]*);t=(?:0|[1-9][0-9]*)"
POLICY_FIELD = re.compile(rf"{_QUOTA}(?:, {_QUOTA})*")
STATE_FIELD = re.compile(rf"{_STATE}(?:, {_STATE})*")
QUOTA_ITEM = re.compile(r'"([a-z0-9-]+)";q=(\d+);w=(\d+)')
STATE_ITEM = re.compile(r'"([a-z0-9-]+)";r=(\d+);t=(\d+)')
HEADERS = ("RateLimit-Policy", "RateLimit")

IP_LIMIT, IP_EVERY = 4, 900  # "4/hour": a unit every 900 s
API_LIMIT, API_EVERY = 5, 720  # "5/hour;50/day": every 720 s, and every 1728 s
_ips = itertools.count(1)


def rate_limits(response: httpx.Response) -> dict[str, tuple[int, int, int, int]]:
    """Both header fields, parsed strictly: item name -> (q, w, r, t)."""
    policy, state = (response.headers.get(name) for name in HEADERS)
    assert policy is not None and state is not None, dict(response.headers)
    assert POLICY_FIELD.fullmatch(policy), policy
    assert STATE_FIELD.fullmatch(state), state
    quotas = [(name, int(q), int(w)) for name, q, w in QUOTA_ITEM.findall(policy)]
    states = [(name, int(r), int(t)) for name, r, t in STATE_ITEM.findall(state)]
    assert [q[0] for q in quotas] == [s[0] for s in states], (policy, state)
    assert len({q[0] for q in quotas}) == len(quotas), policy
    return {q[0]: (q[1], q[2], s[1], s[2]) for q, s in zip(quotas, states, strict=True)}


def assert_used(response: httpx.Response, name: str, q: int, w: int, used: int) -> None:
    """``used`` units of ``q`` per ``w`` seconds are spent (within a second of real time)."""
    _, _, r, t = rate_limits(response)[name]
    assert rate_limits(response)[name][:2] == (q, w)
    assert r == q - used, (name, r)
    assert used * w // q - 1 <= t <= used * w // q, (name, t)


def assert_rate_limited(response: httpx.Response) -> int:
    error = assert_error(response, 429, "rate_limited")
    assert {"code", "message", "retry_after"} <= set(error)
    assert isinstance(error["retry_after"], int) and error["retry_after"] >= 1
    assert response.headers["Retry-After"] == str(error["retry_after"])
    assert response.headers["content-type"] == "application/json"
    rate_limits(response)
    return int(error["retry_after"])


def assert_unlimited(response: httpx.Response) -> None:
    assert not {name.lower() for name in HEADERS} & set(response.headers), response.headers


def from_ip() -> dict[str, str]:
    """A client address of its own, as the trusted proxy in front of the server says."""
    return {"X-Forwarded-For": f"203.0.113.{next(_ips)}"}


def new_name() -> str:
    return f"u{uuid.uuid4().hex[:16]}"


def sign_up(client: httpx.Client, name: str, headers: dict[str, str]) -> dict[str, Any]:
    body = {"username": name, "password": PASSWORD}
    assert client.post("/v1/auth/register", json=body, headers=headers).status_code == 201
    login = client.post("/v1/auth/login", json=body, headers=headers)
    assert login.status_code == 200, login.text
    return dict(login.json())


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """Behind a trusted proxy (127.0.0.1), so each test can be a client of its own."""
    workdir = tmp_path_factory.mktemp("proxied")
    server = start(url_for("sqlite", workdir), workdir,
                   SESSIONWARD_TRUSTED_PROXIES="127.0.0.1/32",
                   SESSIONWARD_METRICS_ACCESS="public",
                   SESSIONWARD_IP_RATE_LIMIT="4/hour",
                   SESSIONWARD_API_RATE_LIMIT="5/hour;50/day")  # fmt: skip
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client
    server.stop()


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """Reached directly: no proxy is trusted, so X-Forwarded-For means nothing."""
    workdir = tmp_path_factory.mktemp("direct")
    server = start(url_for("redis", workdir), workdir,
                   SESSIONWARD_IP_RATE_LIMIT="4/hour",
                   SESSIONWARD_API_RATE_LIMIT="5/hour")  # fmt: skip
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client
    server.stop()


def test_headers_on_success_and_on_refusal(proxied: httpx.Client) -> None:
    ip = from_ip()
    body = {"username": new_name(), "password": PASSWORD}
    registered = proxied.post("/v1/auth/register", json=body, headers=ip)
    assert registered.status_code == 201
    assert list(rate_limits(registered)) == ["ip"]  # one limit: the policy's own name
    assert_used(registered, "ip", IP_LIMIT, 3600, 1)
    login = proxied.post("/v1/auth/login", json=body, headers=ip)
    assert_used(login, "ip", IP_LIMIT, 3600, 2)
    auth = bearer(login.json())
    for used in range(1, API_LIMIT + 1):
        ok = proxied.get("/v1/sessions", headers={**auth, **ip})
        assert ok.status_code == 200
        assert list(rate_limits(ok)) == ["api-3600s", "api-86400s"]  # two limits, named apart
        assert_used(ok, "api-3600s", API_LIMIT, 3600, used)
        assert_used(ok, "api-86400s", 50, 86400, used)
    refused = proxied.get("/v1/sessions", headers={**auth, **ip})
    retry_after = assert_rate_limited(refused)
    assert API_EVERY - 1 <= retry_after <= API_EVERY  # one more unit of the hour
    assert_used(refused, "api-3600s", API_LIMIT, 3600, API_LIMIT)
    assert_used(refused, "api-86400s", 50, 86400, API_LIMIT)  # the refusal spent nothing
    written = proxied.put("/v1/state/user/doc", json={"data": 1}, headers={**auth, **ip})
    assert assert_rate_limited(written) == retry_after  # writes spend the same budget


def test_sign_in_counts_per_ip_never_per_user(proxied: httpx.Client) -> None:
    ip, other_ip = from_ip(), from_ip()
    alice, bob = new_name(), new_name()
    tokens = sign_up(proxied, alice, ip)  # 2 of the IP's 4
    registered = proxied.post(  # a bearer token changes nothing: still the IP's budget
        "/v1/auth/register", json={"username": bob, "password": PASSWORD},
        headers={**ip, **bearer(tokens)},
    )  # fmt: skip
    assert_used(registered, "ip", IP_LIMIT, 3600, 3)
    login = proxied.post("/v1/auth/login", json={"username": bob, "password": PASSWORD},
                         headers=ip)  # fmt: skip
    assert_used(login, "ip", IP_LIMIT, 3600, 4)
    for path, body in [
        ("/v1/auth/register", {"username": new_name(), "password": PASSWORD}),
        ("/v1/auth/login", {"username": alice, "password": PASSWORD}),
        ("/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}),
    ]:
        assert_rate_limited(proxied.post(path, json=body, headers={**ip, **bearer(tokens)}))
    elsewhere = proxied.post("/v1/auth/login", json={"username": alice, "password": PASSWORD},
                             headers=other_ip)  # fmt: skip
    assert elsewhere.status_code == 200
    assert_used(elsewhere, "ip", IP_LIMIT, 3600, 1)
    api = proxied.get("/v1/sessions", headers={**ip, **bearer(tokens)})
    assert_used(api, "api-3600s", API_LIMIT, 3600, 1)  # sign-ins spent nothing of the user's


def test_the_api_counts_per_user(proxied: httpx.Client) -> None:
    ip, other_ip = from_ip(), from_ip()
    alice, bob = sign_up(proxied, new_name(), ip), sign_up(proxied, new_name(), ip)
    for used in range(1, API_LIMIT + 1):
        assert_used(proxied.get("/v1/sessions", headers={**ip, **bearer(alice)}),
                    "api-3600s", API_LIMIT, 3600, used)  # fmt: skip
    assert_rate_limited(proxied.get("/v1/sessions", headers={**ip, **bearer(alice)}))
    # alice from another address: the same user, the same spent budget
    assert_rate_limited(proxied.get("/v1/sessions", headers={**other_ip, **bearer(alice)}))
    # bob from alice's address: a budget of his own, for reads and writes alike
    assert_used(proxied.get("/v1/sessions", headers={**ip, **bearer(bob)}),
                "api-3600s", API_LIMIT, 3600, 1)  # fmt: skip
    put = proxied.put("/v1/state/user/doc", json={"data": 1}, headers={**ip, **bearer(bob)})
    assert put.status_code == 200
    assert_used(put, "api-3600s", API_LIMIT, 3600, 2)
    # a token that does not verify is nobody's: counted by address
    forged = proxied.get("/v1/sessions", headers={**ip, "Authorization": "Bearer forged"})
    assert forged.status_code == 401
    assert_used(forged, "api-3600s", API_LIMIT, 3600, 1)
    assert_used(proxied.get("/v1/sessions", headers=ip), "api-3600s", API_LIMIT, 3600, 2)


@pytest.mark.parametrize("path", ["/v1/health", "/v1/ready", "/metrics", "/openapi.json", "/docs"])
def test_exempt_endpoints_are_not_limited(proxied: httpx.Client, path: str) -> None:
    ip = from_ip()
    for _ in range(2 * API_LIMIT):
        answer = proxied.get(path, headers=ip)
        assert answer.status_code == 200, answer.text
        assert_unlimited(answer)
    # nothing was counted against the address either
    assert_used(proxied.get("/v1/sessions", headers=ip), "api-3600s", API_LIMIT, 3600, 1)


def test_a_spoofed_forwarded_for_does_not_change_the_ip_key(direct: httpx.Client) -> None:
    def spoofed(n: int) -> dict[str, str]:
        return {"X-Forwarded-For": f"198.51.100.{n}, 192.0.2.{n}", "X-Real-IP": f"192.0.2.{n}",
                "Forwarded": f"for=192.0.2.{n}"}  # fmt: skip

    for used in range(1, IP_LIMIT + 1):
        answer = direct.post("/v1/auth/register", json={}, headers=spoofed(used))
        assert answer.status_code == 422
        assert_used(answer, "ip", IP_LIMIT, 3600, used)
    assert_rate_limited(direct.post("/v1/auth/register", json={}, headers=spoofed(99)))
    assert_rate_limited(direct.post("/v1/auth/login", json={}, headers=spoofed(98)))
    for used in range(1, 6):
        answer = direct.get("/v1/sessions", headers=spoofed(used))
        assert answer.status_code == 401
        assert_used(answer, "api", 5, 3600, used)
    assert_rate_limited(direct.get("/v1/sessions", headers=spoofed(97)))


# Several instances on one store share one budget.

SHARED = 10


@pytest.fixture(scope="module", params=["redis", "postgresql"])
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    workdir = tmp_path_factory.mktemp(f"pair-{request.param}")
    store = url_for(str(request.param), workdir)
    servers: list[Server] = []
    try:
        for n in range(2):
            servers.append(start(store, _own(workdir, n),
                                 SESSIONWARD_API_RATE_LIMIT=f"{SHARED}/hour"))  # fmt: skip
        with (
            httpx.Client(base_url=servers[0].url, timeout=30) as one,
            httpx.Client(base_url=servers[1].url, timeout=30) as two,
        ):
            yield one, two
    finally:
        for server in servers:
            server.stop()


def _own(workdir: Path, n: int) -> Path:
    path = workdir / f"instance-{n}"
    path.mkdir()
    return path


def test_interleaved_instances_share_one_limit(pair: tuple[httpx.Client, httpx.Client]) -> None:
    one, two = pair
    name = new_name()
    assert one.post("/v1/auth/register", json={"username": name, "password": PASSWORD}).is_success
    login = two.post("/v1/auth/login", json={"username": name, "password": PASSWORD})
    auth = bearer(login.json())
    answers = [(one, two)[n % 2].get("/v1/sessions", headers=auth) for n in range(3 * SHARED)]
    assert [a.status_code for a in answers] == [200] * SHARED + [429] * (2 * SHARED)
    left = [rate_limits(a)["api"][2] for a in answers[:SHARED]]
    assert left == list(range(SHARED - 1, -1, -1))  # one count, whichever instance answered
    for refused in answers[SHARED:]:
        assert_rate_limited(refused)


def test_concurrent_instances_share_one_limit(pair: tuple[httpx.Client, httpx.Client]) -> None:
    one, two = pair
    name = new_name()
    assert two.post("/v1/auth/register", json={"username": name, "password": PASSWORD}).is_success
    auth = bearer(one.post("/v1/auth/login", json={"username": name, "password": PASSWORD}).json())
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda n: (one, two)[n % 2].get("/v1/sessions", headers=auth),
                                range(4 * SHARED)))  # fmt: skip
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == SHARED and statuses.count(429) == 3 * SHARED
    ok = [a for a in answers if a.status_code == 200]
    assert sorted(rate_limits(a)["api"][2] for a in ok) == list(range(SHARED))
