"""Attacks over HTTP: guessing, forged tokens, spoofed client addresses."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import url_for

from .server import SECRET, Server, start
from .test_flows import PASSWORD, assert_error, bearer, signed_up


def test_parallel_wrong_logins_lock_after_max_failures(client: httpx.Client, name: str) -> None:
    signed_up(client, name)
    body = {"username": name, "password": "wrong password!"}
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda _: client.post("/v1/auth/login", json=body), range(100)))
    statuses = [a.status_code for a in answers]
    assert statuses.count(401) <= 5  # each 401 is one password check; the rest never got one
    assert statuses.count(401) + statuses.count(429) == 100
    for locked in (a for a in answers if a.status_code == 429):
        error = assert_error(locked, 429, "locked_out")
        assert 1 <= int(locked.headers["Retry-After"]) <= 86400
        assert error["retry_after"] == int(locked.headers["Retry-After"])
    good = client.post("/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert_error(good, 429, "locked_out")


def test_unknown_and_wrong_look_the_same(client: httpx.Client, name: str) -> None:
    signed_up(client, name)
    wrong = client.post("/v1/auth/login", json={"username": name, "password": "wrong password!"})
    unknown = client.post("/v1/auth/login", json={"username": name + "x", "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    for _ in range(4):
        client.post("/v1/auth/login", json={"username": name + "x", "password": PASSWORD})
    locked = client.post("/v1/auth/login", json={"username": name + "x", "password": PASSWORD})
    assert_error(locked, 429, "locked_out")


def _claims(tokens: dict[str, Any]) -> dict[str, Any]:
    return dict(jwt.decode(tokens["access_token"], options={"verify_signature": False}))


def _kid(tokens: dict[str, Any]) -> str:
    return str(jwt.get_unverified_header(tokens["access_token"])["kid"])


@pytest.mark.parametrize("attack", ["none", "wrong-key", "audience", "expired", "tampered",
                                    "no-kid", "garbage"])  # fmt: skip
def test_forged_access_tokens_are_refused(client: httpx.Client, name: str, attack: str) -> None:
    tokens = signed_up(client, name)
    claims, kid = _claims(tokens), _kid(tokens)
    if attack == "none":
        token = jwt.encode(claims, None, "none", {"kid": kid})
    elif attack == "wrong-key":
        token = jwt.encode(claims, "an-attacker-secret-" + "a" * 40, "HS256", {"kid": kid})
    elif attack == "audience":
        token = jwt.encode({**claims, "aud": "elsewhere"}, SECRET, "HS256", {"kid": kid})
    elif attack == "expired":
        past = int(time.time()) - 3600
        token = jwt.encode(
            {**claims, "iat": past - 900, "exp": past}, SECRET, "HS256", {"kid": kid}
        )
    elif attack == "tampered":
        head, _, signature = tokens["access_token"].split(".")
        forged = jwt.encode({**claims, "sub": "someone-else"}, "x" * 40, "HS256", {"kid": kid})
        token = f"{head}.{forged.split('.')[1]}.{signature}"
    elif attack == "no-kid":
        token = jwt.encode(claims, SECRET, "HS256")
    else:
        token = "not.a.jwt"
    refused = client.get("/v1/sessions", headers={"Authorization": f"Bearer {token}"})
    assert_error(refused, 401, "unauthorized")
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/v1/sessions", headers=bearer(tokens)).status_code == 200


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "bearer x y", "Bearer ..."])
def test_missing_or_malformed_authorization(client: httpx.Client, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    assert_error(client.get("/v1/sessions", headers=headers), 401, "unauthorized")


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("proxied")
    running = start(url_for("sqlite", workdir), workdir, SESSIONWARD_LOGIN_IP_MAX_FAILURES="3",
                    SESSIONWARD_TRUSTED_PROXIES="10.9.9.9/32")  # fmt: skip
    yield running
    running.stop()


def test_a_spoofed_forwarded_for_is_ignored(proxied: Server) -> None:
    with httpx.Client(base_url=proxied.url) as client:
        for n in range(3):  # three accounts, each "from" another address: all one client
            spoof = {"X-Forwarded-For": f"198.51.100.{n}"}
            body = {"username": f"victim{n}", "password": "wrong password!"}
            assert client.post("/v1/auth/login", json=body, headers=spoof).status_code == 401
        body = {"username": "victim9", "password": "wrong password!"}
        blocked = client.post("/v1/auth/login", json=body, headers={"X-Forwarded-For": "1.2.3.4"})
        assert_error(blocked, 429, "locked_out")


def test_proxy_addresses_are_trusted_only_from_a_trusted_peer(tmp_path: Path) -> None:
    from starlette.requests import Request

    from sessionward import Settings
    from sessionward.web.client import client_ip

    proxies = Settings(trusted_proxies=["10.0.0.0/8"]).trusted_proxies

    def ip(peer: str, forwarded: str | None) -> str | None:
        headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
        scope = {"type": "http", "client": (peer, 1234), "headers": headers}
        return client_ip(Request(scope), proxies)

    assert ip("203.0.113.5", "1.1.1.1") == "203.0.113.5"  # untrusted peer: header ignored
    assert ip("10.0.0.1", "1.1.1.1") == "1.1.1.1"
    assert ip("10.0.0.1", "9.9.9.9, 1.1.1.1, 10.0.0.2") == "1.1.1.1"  # skip trusted hops
    assert ip("10.0.0.1", "garbage") == "10.0.0.1"
    assert ip("10.0.0.1", None) == "10.0.0.1"
