"""The login flow through a real server: register, login, use, refresh, reuse, logout."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

PASSWORD = "correct horse battery"


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def signed_up(client: httpx.Client, name: str) -> dict[str, Any]:
    assert (
        client.post("/v1/auth/register", json={"username": name, "password": PASSWORD}).status_code
        == 201
    )
    login = client.post("/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return dict(login.json())


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


def test_register_login_use_refresh_reuse(client: httpx.Client, name: str) -> None:
    first = signed_up(client, name)
    assert first["token_type"] == "bearer" and first["expires_in"] == 900
    assert client.get("/v1/sessions", headers=bearer(first)).status_code == 200
    second = client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}).json()
    assert second["session_id"] == first["session_id"]
    third = client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}).json()
    assert client.get("/v1/sessions", headers=bearer(third)).status_code == 200
    # the first refresh token was spent two rotations ago: reuse revokes the whole session
    reused = client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_error(reused, 401, "token_reused")
    gone = client.get("/v1/sessions", headers=bearer(third))
    assert_error(gone, 401, "unauthorized")
    assert gone.headers["WWW-Authenticate"] == "Bearer"
    again = client.post("/v1/auth/refresh", json={"refresh_token": third["refresh_token"]})
    assert_error(again, 401, "invalid_token")


def test_parallel_refresh_within_grace_gets_one_pair(client: httpx.Client, name: str) -> None:
    tokens = signed_up(client, name)
    body = {"refresh_token": tokens["refresh_token"]}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: client.post("/v1/auth/refresh", json=body), range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    assert len({a.text for a in answers}) == 1
    assert client.get("/v1/sessions", headers=bearer(answers[0].json())).status_code == 200


def test_logout(client: httpx.Client, name: str) -> None:
    tokens = signed_up(client, name)
    assert client.post("/v1/auth/logout", headers=bearer(tokens)).status_code == 204
    assert_error(client.get("/v1/sessions", headers=bearer(tokens)), 401, "unauthorized")
    refresh = client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert_error(refresh, 401, "invalid_token")


def test_logout_all(client: httpx.Client, name: str) -> None:
    one = signed_up(client, name)
    two = client.post("/v1/auth/login", json={"username": name, "password": PASSWORD}).json()
    listed = client.get("/v1/sessions", headers=bearer(one)).json()["sessions"]
    assert sorted(s["session_id"] for s in listed) == sorted([one["session_id"], two["session_id"]])
    assert [s["current"] for s in listed if s["session_id"] == one["session_id"]] == [True]
    assert client.post("/v1/auth/logout-all", headers=bearer(two)).status_code == 204
    for tokens in (one, two):
        assert_error(client.get("/v1/sessions", headers=bearer(tokens)), 401, "unauthorized")


def test_users_cannot_see_or_touch_each_other(client: httpx.Client, name: str) -> None:
    alice, bob = signed_up(client, name + "a"), signed_up(client, name + "b")
    bobs = client.get("/v1/sessions", headers=bearer(bob)).json()["sessions"]
    assert [s["session_id"] for s in bobs] == [bob["session_id"]]
    stolen = client.delete(f"/v1/sessions/{alice['session_id']}", headers=bearer(bob))
    assert_error(stolen, 404, "not_found")
    assert client.get("/v1/sessions", headers=bearer(alice)).status_code == 200
    client.put("/v1/state/user/notes", json={"data": "alice's"}, headers=bearer(alice))
    assert_error(client.get("/v1/state/user/notes", headers=bearer(bob)), 404, "not_found")
    assert client.get("/v1/state/user", headers=bearer(bob)).json() == {"names": []}
    assert_error(client.delete("/v1/state/user/notes", headers=bearer(bob)), 404, "not_found")
    assert client.get("/v1/state/user/notes", headers=bearer(alice)).json()["data"] == "alice's"
    mine = client.delete(f"/v1/sessions/{bob['session_id']}", headers=bearer(bob))
    assert mine.status_code == 204


def test_state_versions_and_conflicts(client: httpx.Client, name: str) -> None:
    auth = bearer(signed_up(client, name))
    put = client.put("/v1/state/session/cart", json={"data": {"items": [1]}}, headers=auth)
    assert put.json() == {"name": "cart", "version": 1} and put.headers["ETag"] == '"1"'
    got = client.get("/v1/state/session/cart", headers=auth)
    assert got.json() == {"name": "cart", "data": {"items": [1]}, "version": 1}
    assert got.headers["ETag"] == '"1"'
    ok = client.put(
        "/v1/state/session/cart", json={"data": []}, headers={**auth, "If-Match": '"1"'}
    )
    assert ok.json()["version"] == 2
    stale = client.put(
        "/v1/state/session/cart", json={"data": 0}, headers={**auth, "If-Match": '"1"'}
    )
    assert_error(stale, 412, "version_conflict")
    assert client.get("/v1/state/session", headers=auth).json() == {"names": ["cart"]}
    assert client.delete("/v1/state/session/cart", headers=auth).status_code == 204
    assert_error(client.get("/v1/state/session/cart", headers=auth), 404, "not_found")
    assert_error(client.get("/v1/state/team/cart", headers=auth), 404, "not_found")


def test_health_ready_metrics_openapi(client: httpx.Client) -> None:
    assert client.get("/v1/health").json() == {"status": "ok"}
    assert client.get("/v1/ready").json()["status"] == "ready"
    assert client.get("/metrics").status_code == 401  # admin-only: tests/capacity/test_metrics*
    spec = client.get("/openapi.json").json()
    assert {"/v1/auth/login", "/v1/state/{scope}/{name}", "/v1/sessions"} <= set(spec["paths"])
