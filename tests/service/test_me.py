"""``GET /v1/me`` through a real server: the principal's identity, 401 without one."""

from __future__ import annotations

import httpx

from sessionward import Settings
from sessionward.sync import SyncWard

from .server import SECRET, Server
from .test_flows import assert_error, bearer, signed_up


def test_me_is_the_tokens_user_and_session(client: httpx.Client, name: str) -> None:
    tokens = signed_up(client, name)
    answer = client.get("/v1/me", headers=bearer(tokens))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body == {"user_id": body["user_id"], "username": name, "roles": [],
                    "session_id": tokens["session_id"]}  # fmt: skip
    other = signed_up(client, name + "b")
    theirs = client.get("/v1/me", headers=bearer(other)).json()
    assert theirs["username"] == name + "b" and theirs["user_id"] != body["user_id"]
    assert theirs["session_id"] == other["session_id"] != tokens["session_id"]


def test_me_shows_roles_set_in_the_store(server: Server, client: httpx.Client, name: str) -> None:
    tokens = signed_up(client, name)
    user_id = client.get("/v1/me", headers=bearer(tokens)).json()["user_id"]
    settings = Settings(secret_key=SECRET)
    with SyncWard(server.env["SESSIONWARD_STORE"], settings=settings, sweep=False) as ward:
        ward.users.set_roles(user_id, ("admin", "editor"))
    assert client.get("/v1/me", headers=bearer(tokens)).json()["roles"] == ["admin", "editor"]


def test_me_refuses_without_a_live_session(client: httpx.Client, name: str) -> None:
    assert_error(client.get("/v1/me"), 401, "unauthorized")
    forged = client.get("/v1/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert_error(forged, 401, "unauthorized")
    assert forged.headers["WWW-Authenticate"] == "Bearer"
    tokens = signed_up(client, name)
    assert client.post("/v1/auth/logout", headers=bearer(tokens)).status_code == 204
    assert_error(client.get("/v1/me", headers=bearer(tokens)), 401, "unauthorized")
