"""Attacks over HTTP: guessing, forged tokens, spoofed client addresses."""

from __future__ import annotations

import base64
import hmac
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

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


ATTACKS = ["none", "wrong-key", "audience", "issuer", "expired", "not-yet-valid",
           "issued-in-future", "tampered", "no-kid", "unknown-kid", "hs384", "hs512",
           "rs256-attacker", "eddsa-attacker", "embedded-jwk", "jku", "garbage"]  # fmt: skip


def forge(attack: str, tokens: dict[str, Any]) -> str:
    """An access token made by someone without the server's key (or with it, but with a
    claim or header the server must refuse)."""
    claims, kid, now = _claims(tokens), _kid(tokens), int(time.time())
    ours = {"kid": kid}
    if attack == "none":
        return str(jwt.encode(claims, None, "none", ours))
    if attack == "wrong-key":
        return jwt.encode(claims, "an-attacker-secret-" + "a" * 40, "HS256", ours)
    if attack in ("audience", "issuer"):
        return jwt.encode({**claims, attack[:3]: "elsewhere"}, SECRET, "HS256", ours)
    if attack == "expired":
        return jwt.encode({**claims, "iat": now - 4500, "exp": now - 3600}, SECRET, "HS256", ours)
    if attack == "not-yet-valid":
        return jwt.encode({**claims, "nbf": now + 3600}, SECRET, "HS256", ours)
    if attack == "issued-in-future":
        later = {**claims, "iat": now + 3600, "exp": now + 4500}
        return jwt.encode(later, SECRET, "HS256", ours)
    if attack == "tampered":
        head, _, signature = tokens["access_token"].split(".")
        forged = jwt.encode({**claims, "sub": "someone-else"}, "x" * 40, "HS256", ours)
        return f"{head}.{forged.split('.')[1]}.{signature}"
    if attack == "no-kid":
        return jwt.encode(claims, SECRET, "HS256")
    if attack == "unknown-kid":
        return jwt.encode(claims, SECRET, "HS256", {"kid": "0123456789abcdef"})
    if attack in ("hs384", "hs512"):  # our own secret, but not the pinned algorithm
        header = {"alg": attack.upper(), "typ": "JWT", **ours}
        return hmac_signed(header, claims, SECRET.encode(), f"sha{attack[2:]}")
    if attack == "rs256-attacker":
        return jwt.encode(claims, rsa.generate_private_key(65537, 2048), "RS256", ours)
    if attack == "eddsa-attacker":
        return jwt.encode(claims, ed25519.Ed25519PrivateKey.generate(), "EdDSA", ours)
    if attack == "embedded-jwk":  # the attacker's own key in the header: never believed
        mine = "an-attacker-secret-" + "j" * 40
        jwk = {"kty": "oct", "k": base64.urlsafe_b64encode(mine.encode()).decode().rstrip("=")}
        return jwt.encode(claims, mine, "HS256", {**ours, "jwk": jwk})
    if attack == "jku":  # a key set "at" an attacker's URL: never fetched
        return jwt.encode(claims, "x" * 40, "HS256", {**ours, "jku": "https://evil.example/k"})
    return "not.a.jwt"


def test_each_token_is_good_only_for_its_purpose(client: httpx.Client, name: str) -> None:
    """A refresh token is no access token, and an access token refreshes nothing."""
    tokens = signed_up(client, name)
    assert_refused(client, tokens["refresh_token"])
    as_refresh = client.post("/v1/auth/refresh", json={"refresh_token": tokens["access_token"]})
    assert_error(as_refresh, 401, "invalid_token")
    assert client.get("/v1/sessions", headers=bearer(tokens)).status_code == 200


def assert_refused(client: httpx.Client, token: str) -> None:
    refused = client.get("/v1/sessions", headers={"Authorization": f"Bearer {token}"})
    assert_error(refused, 401, "unauthorized")
    assert refused.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("attack", ATTACKS)
def test_forged_access_tokens_are_refused(client: httpx.Client, name: str, attack: str) -> None:
    tokens = signed_up(client, name)
    assert_refused(client, forge(attack, tokens))
    assert client.get("/v1/sessions", headers=bearer(tokens)).status_code == 200


def test_a_revoked_sessions_access_token_is_refused(client: httpx.Client, name: str) -> None:
    """Revoked from another session (not a logout): the token is still unexpired."""
    victim = signed_up(client, name)
    other = client.post("/v1/auth/login", json={"username": name, "password": PASSWORD}).json()
    gone = client.delete(f"/v1/sessions/{victim['session_id']}", headers=bearer(other))
    assert gone.status_code == 204
    assert_refused(client, victim["access_token"])
    refresh = client.post("/v1/auth/refresh", json={"refresh_token": victim["refresh_token"]})
    assert_error(refresh, 401, "invalid_token")
    assert client.get("/v1/sessions", headers=bearer(other)).status_code == 200


OTHER_SECRET = "another-deployment-" + "o" * 40


@pytest.fixture(scope="module")
def other_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second deployment: its own store and its own secret."""
    workdir = tmp_path_factory.mktemp("other")
    running = start(url_for("sqlite", workdir), workdir,
                    SESSIONWARD_SECRET_KEY=OTHER_SECRET)  # fmt: skip
    yield running
    running.stop()


def test_a_token_of_another_instance_is_refused(
    client: httpx.Client, other_instance: Server, name: str
) -> None:
    signed_up(client, name)
    with httpx.Client(base_url=other_instance.url) as elsewhere:
        theirs = signed_up(elsewhere, name)  # the same username, on the other deployment
        assert elsewhere.get("/v1/sessions", headers=bearer(theirs)).status_code == 200
    assert _kid(theirs) != _kid(signed_up(client, name + "2"))
    assert_refused(client, theirs["access_token"])
    # and with the kid rewritten to ours: the signature is still the other key's
    ours = {"kid": _kid(signed_up(client, name + "3"))}
    assert_refused(client, jwt.encode(_claims(theirs), OTHER_SECRET, "HS256", ours))


@pytest.fixture(scope="module")
def rs256(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, bytes]]:
    """A deployment signing with RS256; its public key is, by design, no secret."""
    private = rsa.generate_private_key(65537, 2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()  # fmt: skip
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    workdir = tmp_path_factory.mktemp("rs256")
    running = start(url_for("sqlite", workdir), workdir, SESSIONWARD_JWT_ALGORITHM="RS256",
                    SESSIONWARD_JWT_PRIVATE_KEY=pem)  # fmt: skip
    yield running, public
    running.stop()


def hmac_signed(header: dict[str, Any], claims: dict[str, Any], key: bytes, digest: str) -> str:
    """An HMAC JWT by hand: PyJWT rightly refuses a PEM public key as an HMAC secret (and
    warns of a short one)."""
    part = [base64.urlsafe_b64encode(json.dumps(x).encode()).rstrip(b"=") for x in (header, claims)]
    signed = b".".join(part)
    mac = base64.urlsafe_b64encode(hmac.new(key, signed, digest).digest()).rstrip(b"=")
    return (signed + b"." + mac).decode()


def test_hs256_signed_with_the_rs256_public_key_is_refused(
    rs256: tuple[Server, bytes], name: str
) -> None:
    server, public = rs256
    with httpx.Client(base_url=server.url) as client:
        tokens = signed_up(client, name)
        header = jwt.get_unverified_header(tokens["access_token"])
        assert header["alg"] == "RS256"
        assert client.get("/v1/sessions", headers=bearer(tokens)).status_code == 200
        confused = hmac_signed({"alg": "HS256", "typ": "JWT", "kid": header["kid"]},
                               _claims(tokens), public, "sha256")  # fmt: skip
        assert_refused(client, confused)
        assert_refused(client, jwt.encode(_claims(tokens), None, "none", {"kid": header["kid"]}))


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
