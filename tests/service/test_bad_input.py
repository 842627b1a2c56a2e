"""No request, however malformed, gets a 500 or a traceback: 4xx with the error shape."""

from __future__ import annotations

import httpx
import pytest

from .test_flows import assert_error, bearer, signed_up

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{}", "username"),
        (b'{"username": "abc"}', "password"),
        (b'{"username": 12, "password": "xxxxxxxxxxxx"}', "username"),
        (b'{"username": true, "password": "xxxxxxxxxxxx"}', "username"),
        (b'{"username": "abc", "password": "xxxxxxxxxxxx", "admin": true}', "admin"),
        (b'{"username": "abc", "password": NaN}', "body"),
        (b'{"username": "abc", "password": Infinity}', "body"),
        (b'{"username": "\\ud800abc", "password": "xxxxxxxxxxxx"}', "body"),
        (b"\xff\xfe{}", "body"),
        (b"not json", "body"),
        (b"[1, 2]", "body"),
        (b"", "body"),
        (b'{"username": "abc", "password": "xxxxxxxxxxxx"', "body"),
        (b"[" * 100_000, "body"),
    ],
)
def test_bad_bodies(client: httpx.Client, body: bytes, field: str) -> None:
    for path in ("/v1/auth/register", "/v1/auth/login"):
        error = assert_error(client.post(path, content=body, headers=JSON), 422, "invalid_request")
        assert field in [f["field"] for f in error["fields"]], error


@pytest.mark.parametrize(
    ("username", "password", "field"),
    [("ab", "long enough pw", "username"), ("x" * 65, "long enough pw", "username"),
     ("x" * 300, "long enough pw", "username"), ("bad name", "long enough pw", "username"),
     ("émile", "long enough pw", "username"), ("abc\u202e", "long enough pw", "username"),
     ("okname", "short", "password"), ("okname", "p" * 1025, "password")],
)  # fmt: skip
def test_bad_registrations(client: httpx.Client, username: str, password: str, field: str) -> None:
    answer = client.post("/v1/auth/register", json={"username": username, "password": password})
    error = assert_error(answer, 422, "invalid_request")
    assert [f["field"] for f in error["fields"]] == [field]


def test_wrong_content_type(client: httpx.Client) -> None:
    answer = client.post(
        "/v1/auth/login", content=b"username=a", headers={"content-type": "text/plain"}
    )
    assert_error(answer, 422, "invalid_request")


def test_oversized_body(client: httpx.Client) -> None:
    huge = b'{"username": "' + b"a" * (3 * 1024 * 1024) + b'", "password": "x"}'
    assert_error(client.post("/v1/auth/login", content=huge, headers=JSON), 413, "too_large")


def test_unknown_path_and_method(client: httpx.Client) -> None:
    assert_error(client.get("/v1/nowhere"), 404, "not_found")
    wrong = client.delete("/v1/auth/login")
    assert_error(wrong, 405, "method_not_allowed")
    assert "POST" in wrong.headers.get("Allow", "")


def test_state_edge_cases(client: httpx.Client, name: str) -> None:
    auth = bearer(signed_up(client, name))
    bad_name = client.put("/v1/state/user/" + "x" * 129, json={"data": 1}, headers=auth)
    assert_error(bad_name, 422, "invalid_request")
    odd = client.put("/v1/state/user/a%20b", json={"data": 1}, headers=auth)
    assert_error(odd, 422, "invalid_request")
    no_data = client.put("/v1/state/user/doc", json={}, headers=auth)
    assert_error(no_data, 422, "invalid_request")
    big = client.put("/v1/state/user/doc", json={"data": "x" * 300_000}, headers=auth)
    assert_error(big, 413, "too_large")
    bad_match = client.put(
        "/v1/state/user/doc", json={"data": 1}, headers={**auth, "If-Match": "abc"}
    )
    error = assert_error(bad_match, 422, "invalid_request")
    assert error["fields"][0]["field"] == "If-Match"
    emoji = client.put("/v1/state/user/doc", json={"data": {"k": "🦊\u0000ü"}}, headers=auth)
    assert emoji.status_code == 200
    assert client.get("/v1/state/user/doc", headers=auth).json()["data"] == {"k": "🦊\u0000ü"}
    null = client.put("/v1/state/user/doc", json={"data": None}, headers=auth)
    assert null.status_code == 200


def test_refresh_bad_bodies(client: httpx.Client) -> None:
    assert_error(client.post("/v1/auth/refresh", json={}), 422, "invalid_request")
    assert_error(client.post("/v1/auth/refresh", json={"refresh_token": 5}), 422, "invalid_request")
    long = client.post("/v1/auth/refresh", json={"refresh_token": "x" * 2000})
    assert_error(long, 422, "invalid_request")
    assert_error(
        client.post("/v1/auth/refresh", json={"refresh_token": "nope"}), 401, "invalid_token"
    )


@pytest.mark.parametrize("username", ["\x00", "ab\x00cd", "x" * 65 + "\x00"])
def test_a_login_no_user_can_have_is_refused_like_a_wrong_password(
    client: httpx.Client, username: str
) -> None:
    answer = client.post("/v1/auth/login", json={"username": username, "password": "whatever pw"})
    assert_error(answer, 401, "invalid_credentials")


@pytest.mark.parametrize("job_id", ["%00", "a%00b", "%7f", "%01"])
def test_a_job_id_no_job_can_have_is_not_found(
    client: httpx.Client, name: str, job_id: str
) -> None:
    auth = bearer(signed_up(client, name))
    assert_error(client.get(f"/v1/jobs/{job_id}", headers=auth), 404, "not_found")
    assert_error(client.post(f"/v1/jobs/{job_id}/cancel", headers=auth), 404, "not_found")
    assert_error(client.get(f"/v1/jobs/{job_id}/events", headers=auth), 404, "not_found")


@pytest.mark.parametrize(
    ("path", "template"),
    [("/v1/jobs", "/v1/jobs"), ("/v1/budget/charges", "/v1/budget/charges"),
     ("/v1/state/user/doc", "/v1/state/{scope}/{name}")],
)  # fmt: skip
def test_405_names_every_method_of_the_path(client: httpx.Client, path: str, template: str) -> None:
    documented = {m.upper() for m in client.get("/openapi.json").json()["paths"][template]}
    answer = client.request("PATCH", path)
    assert_error(answer, 405, "method_not_allowed")
    allowed = {m.strip() for m in answer.headers["Allow"].split(",")} - {"HEAD"}
    assert len(documented) > 1 and allowed == documented
