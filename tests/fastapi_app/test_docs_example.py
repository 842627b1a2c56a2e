"""The app at the top of docs/fastapi.md, run as written, on SQLite, Redis and PostgreSQL."""

from __future__ import annotations

import re
import types
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import SHARED_BACKENDS, url_for

pytestmark = pytest.mark.anyio
DOC = Path(__file__).parents[2] / "docs" / "fastapi.md"


def example_source() -> str:
    match = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert match is not None
    return match.group(1)


@pytest.fixture(params=SHARED_BACKENDS)
async def client(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("APP_STORE", url_for(str(request.param), tmp_path))
    module = types.ModuleType("docs_fastapi_example")
    exec(compile(example_source(), str(DOC), "exec"), module.__dict__)
    app = module.app
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            yield client


async def signed_in(client: httpx.AsyncClient) -> dict[str, str]:
    creds = {"username": f"u{uuid.uuid4().hex[:12]}", "password": "a long enough password"}
    assert (await client.post("/auth/register", json=creds)).status_code == 201
    login = await client.post("/auth/login", json=creds)
    assert login.status_code == 200
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def test_the_example_signs_in_and_keeps_state(client: httpx.AsyncClient) -> None:
    headers = await signed_in(client)
    me = await client.get("/me", headers=headers)
    assert me.status_code == 200
    assert (await client.put("/notes", json={"a": "b"}, headers=headers)).json() == {"version": 1}
    assert (await client.get("/notes", headers=headers)).json() == {"a": "b"}
    other = await signed_in(client)
    assert (await client.get("/notes", headers=other)).json() == {}


async def test_no_token_is_401_with_the_problem_shape(client: httpx.AsyncClient) -> None:
    answer = await client.get("/me")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert answer.json()["error"]["code"] == "unauthorized"
    bad = await client.get("/me", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401


async def test_a_non_admin_is_403(client: httpx.AsyncClient) -> None:
    answer = await client.get("/admin", headers=await signed_in(client))
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "forbidden"
    assert "insufficient_scope" in answer.headers["WWW-Authenticate"]


async def test_sessionward_errors_are_problems_the_apps_own_are_not(
    client: httpx.AsyncClient,
) -> None:
    creds = {"username": "nobody-" + uuid.uuid4().hex[:8], "password": "wrong password!!"}
    wrong = await client.post("/auth/login", json=creds)
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_credentials"
    assert (await client.get("/no-such-page")).json() == {"detail": "Not Found"}
    invalid = await client.post("/auth/login", json={"username": 1})
    assert invalid.status_code == 422
    assert "detail" in invalid.json()


async def test_a_route_limit_refuses_with_retry_after(client: httpx.AsyncClient) -> None:
    headers = await signed_in(client)
    for _ in range(3):
        assert (await client.put("/notes", json={}, headers=headers)).status_code == 200
    refused = await client.put("/notes", json={}, headers=headers)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert (await client.put("/notes", json={}, headers=await signed_in(client))).status_code == 200


async def test_the_auth_router_is_limited_per_address(client: httpx.AsyncClient) -> None:
    # the limit runs before anything else of a route: ten quick 401s spend the burst of 10
    for _ in range(10):
        assert (await client.get("/auth/sessions")).status_code == 401
    refused = await client.post("/auth/login", json={"username": "any", "password": "any"})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
