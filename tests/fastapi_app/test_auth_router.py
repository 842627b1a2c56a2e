"""The auth router (``sw.auth_router()``) on SQLite, Redis and PostgreSQL: the contract of
the service's /v1/auth and /v1/sessions under a prefix of the app's own."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi import FastAPI

from sessionward.fastapi import SessionWard
from sessionward.users import USERNAME_PATTERN
from tests.conftest import SHARED_BACKENDS, url_for

from .apps import PASSWORD, SETTINGS, bearer, new_name, serving

pytestmark = pytest.mark.anyio


@pytest.fixture(params=SHARED_BACKENDS)
async def client(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    sw = SessionWard(url_for(str(request.param), tmp_path), settings=SETTINGS)

    def build(app: FastAPI) -> None:
        app.include_router(sw.auth_router(), prefix="/auth")

    async with serving(sw, build) as client:
        yield client


async def signed_up(client: httpx.AsyncClient, name: str | None = None) -> dict[str, str]:
    name = name or new_name()
    registered = await client.post("/auth/register", json={"username": name, "password": PASSWORD})
    assert registered.status_code == 201, registered.text
    assert registered.json()["username"] == name
    login = await client.post("/auth/login", json={"username": name, "password": PASSWORD})
    assert login.status_code == 200, login.text
    tokens: dict[str, str] = login.json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in",
                           "session_id"}  # fmt: skip
    return tokens


def error_of(answer: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code
    if status == 401:
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    return dict(answer.json()["error"])


async def test_refresh_rotates_and_a_reused_token_revokes_the_session(
    client: httpx.AsyncClient,
) -> None:
    first = await signed_up(client)
    second = (
        await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ).json()
    assert second["session_id"] == first["session_id"]
    assert second["refresh_token"] != first["refresh_token"]
    third = (
        await client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    ).json()
    assert (await client.get("/auth/sessions", headers=bearer(third))).status_code == 200
    reused = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    error_of(reused, 401, "token_reused")
    error_of(await client.get("/auth/sessions", headers=bearer(third)), 401, "unauthorized")
    again = await client.post("/auth/refresh", json={"refresh_token": third["refresh_token"]})
    error_of(again, 401, "invalid_token")


async def test_lockout_after_the_configured_failures(client: httpx.AsyncClient) -> None:
    name = new_name()
    await client.post("/auth/register", json={"username": name, "password": PASSWORD})
    wrong = {"username": name, "password": "not the password"}
    for _ in range(SETTINGS.login_max_failures):
        error_of(await client.post("/auth/login", json=wrong), 401, "invalid_credentials")
    locked = await client.post("/auth/login", json={"username": name, "password": PASSWORD})
    error = error_of(locked, 429, "locked_out")
    assert 1 <= int(locked.headers["Retry-After"]) <= 86400
    assert error["retry_after"] == int(locked.headers["Retry-After"])


async def test_sessions_list_and_revoke_only_the_callers_own(client: httpx.AsyncClient) -> None:
    name = new_name()
    one = await signed_up(client, name)
    two = (await client.post("/auth/login", json={"username": name, "password": PASSWORD})).json()
    listed = (await client.get("/auth/sessions", headers=bearer(one))).json()["sessions"]
    assert {s["session_id"] for s in listed} == {one["session_id"], two["session_id"]}
    assert [s["current"] for s in listed if s["session_id"] == one["session_id"]] == [True]
    stranger = await signed_up(client)
    taken = await client.delete(f"/auth/sessions/{one['session_id']}", headers=bearer(stranger))
    error_of(taken, 404, "not_found")
    assert (await client.get("/auth/sessions", headers=bearer(one))).status_code == 200
    mine = await client.delete(f"/auth/sessions/{two['session_id']}", headers=bearer(one))
    assert mine.status_code == 204
    error_of(await client.get("/auth/sessions", headers=bearer(two)), 401, "unauthorized")
    error_of(
        await client.delete("/auth/sessions/" + "x" * 300, headers=bearer(one)), 404, "not_found"
    )


async def test_logout_and_logout_all(client: httpx.AsyncClient) -> None:
    name = new_name()
    one = await signed_up(client, name)
    two = (await client.post("/auth/login", json={"username": name, "password": PASSWORD})).json()
    three = (await client.post("/auth/login", json={"username": name, "password": PASSWORD})).json()
    assert (await client.post("/auth/logout", headers=bearer(one))).status_code == 204
    error_of(await client.get("/auth/sessions", headers=bearer(one)), 401, "unauthorized")
    assert (await client.get("/auth/sessions", headers=bearer(two))).status_code == 200
    assert (await client.post("/auth/logout-all", headers=bearer(two))).status_code == 204
    error_of(await client.get("/auth/sessions", headers=bearer(three)), 401, "unauthorized")
    refresh = await client.post("/auth/refresh", json={"refresh_token": three["refresh_token"]})
    error_of(refresh, 401, "invalid_token")
    error_of(await client.post("/auth/logout"), 401, "unauthorized")


async def test_taken_names_ignore_case(client: httpx.AsyncClient) -> None:
    name = new_name()
    await signed_up(client, name)
    taken = await client.post(
        "/auth/register", json={"username": name.upper(), "password": PASSWORD}
    )
    error_of(taken, 409, "username_taken")


NAMES = ["abc", "A.b-c_9", "x" * 64, "ab", "x" * 65, "bad name", "émile", "abc\n", "abc\u202e",
         "", "a/b", "ab\x00c", "\uff46\uff55\uff4c\uff4c"]  # fmt: skip
PASSWORDS = ["p" * 10, "p" * 1024, "p" * 9, "p" * 1025]


def ecma_pattern(validator: Any, pattern: str, instance: object, schema: object) -> Iterator[Any]:
    # JSON Schema patterns are ECMA-262, where "$" ends the input; jsonschema reads them with
    # Python's re, where "$" also matches before a final newline. "\Z" is ECMA's "$".
    if isinstance(instance, str) and not re.search(pattern.replace("$", r"\Z"), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


ECMAValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"pattern": ecma_pattern}
)


async def test_the_schema_accepts_exactly_what_the_server_accepts(
    client: httpx.AsyncClient,
) -> None:
    openapi = (await client.get("/openapi.json")).json()
    schema = openapi["components"]["schemas"]["NewAccount"]
    fields = schema["properties"]
    assert fields["username"]["pattern"] == USERNAME_PATTERN
    assert (fields["username"]["minLength"], fields["username"]["maxLength"]) == (3, 64)
    assert (fields["password"]["minLength"], fields["password"]["maxLength"]) == (10, 1024)
    validator = ECMAValidator(schema)
    cases = [(n, PASSWORD) for n in NAMES] + [(new_name(), p) for p in PASSWORDS]
    verdicts = []
    for username, password in cases:
        body = {"username": username, "password": password}
        answer = await client.post("/auth/register", json=body)
        assert answer.status_code in (201, 422), answer.text
        assert validator.is_valid(body) == (answer.status_code == 201), (body, answer.text)
        verdicts.append(answer.status_code == 201)
    assert verdicts == [True] * 3 + [False] * 10 + [True, True, False, False]
