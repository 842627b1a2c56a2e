"""Secrets never reach the logs, nor a repr.

A real server at log level debug goes through a whole run: register, login, refresh, a
WebSocket, state, a job and its event stream, a charge, logout, and the failures (a wrong
password, a spent refresh token presented again, forged and malformed tokens). Its captured
stdout and stderr must hold none of the passwords, access tokens (nor their signatures),
refresh tokens, token hashes, the secret key or the database password.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from sessionward import Settings, parse_store_url
from sessionward.auth import TokenPair, load_keys
from sessionward.sessions import NewSession, Session
from sessionward.stores.records import (
    ByToken,
    NewSessionRow,
    NewUserRow,
    SessionRow,
    UserChange,
    UserRow,
)
from sessionward.tokens import hash_token
from tests.conftest import SHARED_BACKENDS, url_for

from .server import SECRET, Server, start

DB_PASSWORD = f"db-{secrets.token_urlsafe(12)}"


@pytest.fixture(scope="module", params=SHARED_BACKENDS)
def debug_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("logs")
    url = url_for(str(request.param), workdir)
    # PostgreSQL trusts the test's connections, so a password in the URL is accepted and
    # ignored: the log must not show it either (start-up prints the store's URL)
    url = url.replace("://postgres@", f"://postgres:{DB_PASSWORD}@", 1)
    running = start(url, workdir, SESSIONWARD_LOG_LEVEL="debug",
                    SESSIONWARD_LOGIN_IP_MAX_FAILURES="100000")  # fmt: skip
    yield running
    running.stop()


class Run:
    """A client that remembers every secret it was given or sent."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.secrets: set[str] = {SECRET, DB_PASSWORD}

    def keep(self, pair: dict[str, Any]) -> dict[str, str]:
        access, refresh = pair["access_token"], pair["refresh_token"]
        self.secrets |= {access, access.rsplit(".", 1)[1], refresh, hash_token(refresh)}
        return {"Authorization": f"Bearer {access}"}

    def password(self) -> str:
        found = f"pw-{secrets.token_urlsafe(18)}"
        self.secrets.add(found)
        return found


def whole_run(run: Run, server: Server) -> None:
    client, name, password = run.client, f"u{secrets.token_hex(6)}", run.password()
    body = {"username": name, "password": password}
    assert client.post("/v1/auth/register", json=body).status_code == 201
    short_name = {"username": "x", "password": run.password()}
    assert client.post("/v1/auth/register", json=short_name).status_code == 422
    login = client.post("/v1/auth/login", json=body).json()
    auth = run.keep(login)
    refreshed = client.post("/v1/auth/refresh", json={"refresh_token": login["refresh_token"]})
    auth = run.keep(refreshed.json())
    reused = client.post("/v1/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert reused.status_code == 200  # within the grace window: the same pair again
    again = run.keep(client.post("/v1/auth/login", json=body).json())
    with connect(server.url.replace("http", "ws", 1) + "/v1/ws", additional_headers=again) as ws:
        ws.send(json.dumps({"type": "auth", "access_token": again["Authorization"][7:]}))
        assert json.loads(ws.recv(5))["type"] == "ready"
        ws.send(json.dumps({"type": "message", "text": "hello"}))
        assert json.loads(ws.recv(5))["type"] == "message"
    with connect(server.url.replace("http", "ws", 1) + "/v1/ws") as ws:
        ws.send(json.dumps({"type": "auth", "access_token": again["Authorization"][7:] + "x"}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert client.put("/v1/state/user/notes", json={"data": {"n": 1}}, headers=auth).is_success
    assert client.get("/v1/state/user/notes", headers=auth).status_code == 200
    job = client.post("/v1/jobs", json={"kind": "pii_scan", "params": {"text": "a@b.example"}},
                      headers=auth).json()  # fmt: skip
    with client.stream("GET", f"/v1/jobs/{job['job_id']}/events", headers=auth) as events:
        assert "succeeded" in "".join(events.iter_text())
    charge = {"amount": 5, "idempotency_key": "k1"}
    assert client.post("/v1/budget/charges", json=charge, headers=auth).status_code == 201
    assert client.post("/v1/auth/logout", headers=auth).status_code == 204
    assert client.get("/v1/sessions", headers=auth).status_code == 401  # a revoked token
    assert client.post("/v1/auth/logout-all", headers=again).status_code == 204
    wrong = {"username": name, "password": run.password()}
    assert client.post("/v1/auth/login", json=wrong).status_code == 401
    late = client.post("/v1/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert late.status_code == 401
    bad = {"Authorization": f"Bearer {SECRET}.{password}.x"}
    assert client.get("/v1/sessions", headers=bad).status_code == 401


def test_a_whole_run_leaves_no_secret_in_the_logs(debug_server: Server) -> None:
    with httpx.Client(base_url=debug_server.url, timeout=30) as client:
        run = Run(client)
        whole_run(run, debug_server)
    log = debug_server.log.read_text()
    assert "< TEXT [" in log and "authorization: [not shown]" in log  # debug lines, redacted
    leaked = sorted(secret[:12] + "..." for secret in run.secrets
                    if any(piece in log for piece in pieces(secret)))  # fmt: skip
    assert leaked == [], f"secrets in the server's log: {leaked}"
    assert len(run.secrets) >= 15


def pieces(secret: str) -> list[str]:
    """The secret and its ends: a log that shortens a value keeps its head and tail. (A JWT's
    head is its public header, the same for every token; its signature is a secret too.)"""
    return [secret, secret[-16:]] if secret.startswith("eyJ") else [secret, secret[:16],
                                                                     secret[-16:]]  # fmt: skip


def test_reprs_show_no_secret() -> None:
    key, pem = "repr-secret-" + "r" * 40, "-----BEGIN PRIVATE KEY-----pem-secret"
    hashed, password_hash = hash_token("refresh-token-value"), "$argon2id$v=19$secret-hash"
    settings = Settings(secret_key=key, previous_secret_keys=[key + "old"], jwt_private_key=pem)
    shown = [
        settings,
        settings.model_dump(),
        TokenPair("access.jwt.value", "refresh-token-value", 900, "sid-1"),
        NewSession(Session.from_row(ROW), "refresh-token-value", ()),
        ROW,
        NewSessionRow("sid-1", "u1", hashed, 60.0, 600.0, None, None, "{}"),
        ByToken(hashed),
        UserRow("u1", "alice", "alice", password_hash, (), False, 0.0, 0.0),
        NewUserRow("u1", "alice", "alice", password_hash, ()),
        UserChange(password_hash=password_hash, expected_hash=password_hash),
        load_keys(settings, parse_store_url("memory://")),
    ]
    texts = [text for thing in shown for text in (repr(thing), str(thing))]
    for secret in (key, pem, "access.jwt.value", "refresh-token-value", hashed, password_hash):
        assert not [text for text in texts if secret in text], secret
    assert "sid-1" in repr(shown[2]) and "alice" in repr(shown[7])  # the rest is still shown


HASHED = hash_token("refresh-token-value")
ROW = SessionRow("sid-1", "u1", HASHED, 0.0, 0.0, 60.0, 60.0, 600.0, None, None, None, "{}", 1,
                 prev_token_hash=HASHED)  # fmt: skip
