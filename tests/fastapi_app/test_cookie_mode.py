"""Cookie mode and the CSRF check, on SQLite, Redis and PostgreSQL through the ASGI transport:
the refresh cookie's attributes as Set-Cookie states them, refresh and logout by cookie,
refusal and acceptance by origin, and the access-token cookie's check."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import Depends, FastAPI

from sessionward import Principal
from sessionward.fastapi import RefreshCookie, SessionWard
from tests.conftest import SHARED_BACKENDS, url_for

from .apps import PASSWORD, SETTINGS, bearer, new_name, serving, set_cookies

pytestmark = pytest.mark.anyio
ORIGIN = {"Origin": "https://app.example"}
TRUSTED = "https://spa.example"


@pytest.fixture(params=SHARED_BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return url_for(str(request.param), tmp_path)


@pytest.fixture
async def client(url: str) -> AsyncIterator[httpx.AsyncClient]:
    sw = SessionWard(url, settings=SETTINGS, trusted_origins=[TRUSTED])

    def build(app: FastAPI) -> None:
        app.include_router(sw.auth_router(cookie=RefreshCookie()), prefix="/api/auth")

    async with serving(sw, build) as client:
        yield client


async def logged_in(client: httpx.AsyncClient) -> httpx.Response:
    name = new_name()
    body = {"username": name, "password": PASSWORD}
    assert (await client.post("/api/auth/register", json=body)).status_code == 201
    login = await client.post("/api/auth/login", json=body)
    assert login.status_code == 200, login.text
    return login


def refresh_cookie(answer: httpx.Response) -> str:
    return str(set_cookies(answer)["sw_refresh"]["value"])


async def refresh(client: httpx.AsyncClient, token: str, **headers: str) -> httpx.Response:
    return await client.post(
        "/api/auth/refresh", headers={"Cookie": f"sw_refresh={token}", **headers}
    )


async def test_login_sets_the_refresh_token_as_a_strict_http_only_cookie(
    client: httpx.AsyncClient,
) -> None:
    login = await logged_in(client)
    assert "refresh_token" not in login.json()
    assert set(login.json()) == {"access_token", "token_type", "expires_in", "session_id"}
    cookie = set_cookies(login)["sw_refresh"]
    assert cookie["path"] == "/api/auth/refresh"
    assert cookie["httponly"] is True and cookie["secure"] is True
    assert cookie["samesite"] == "strict"
    assert int(str(cookie["max-age"])) == SETTINGS.session_absolute_timeout
    assert len(str(cookie["value"])) >= 43
    schema = (await client.get("/openapi.json")).json()["paths"]["/api/auth/refresh"]["post"]
    assert "requestBody" not in schema  # the token comes only from the cookie


async def test_refresh_by_cookie_rotates_it_and_omits_it_from_the_body(
    client: httpx.AsyncClient,
) -> None:
    login = await logged_in(client)
    first = refresh_cookie(login)
    answer = await refresh(client, first, **ORIGIN)
    assert answer.status_code == 200, answer.text
    assert "refresh_token" not in answer.json()
    assert answer.json()["session_id"] == login.json()["session_id"]
    second = refresh_cookie(answer)
    assert second != first and second not in answer.text
    me = await client.get("/api/auth/sessions", headers=bearer(answer.json()))
    assert me.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Origin": "https://evil.example"}, {"Origin": "null"}, {"Origin": "http://app.example"},
     {"Origin": "https://app.example.evil.example"}, {"Sec-Fetch-Site": "same-site"},
     {"Sec-Fetch-Site": "cross-site"}],
)  # fmt: skip
async def test_a_refresh_from_another_origin_is_refused_and_spends_nothing(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    token = refresh_cookie(await logged_in(client))
    refused = await refresh(client, token, **headers)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "csrf_failed"
    assert (await refresh(client, token, **ORIGIN)).status_code == 200


@pytest.mark.parametrize(
    "headers", [ORIGIN, {"Origin": TRUSTED}, {"Sec-Fetch-Site": "same-origin"},
                {"Origin": "https://APP.example:443"}],
)  # fmt: skip
async def test_a_refresh_from_the_apps_own_or_a_trusted_origin_is_accepted(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    token = refresh_cookie(await logged_in(client))
    assert (await refresh(client, token, **headers)).status_code == 200


async def test_a_reused_cookie_revokes_the_session_and_clears_the_cookie(
    client: httpx.AsyncClient,
) -> None:
    first = refresh_cookie(await logged_in(client))
    second = refresh_cookie(await refresh(client, first, **ORIGIN))
    third = await refresh(client, second, **ORIGIN)
    reused = await refresh(client, first, **ORIGIN)
    assert reused.status_code == 401
    assert reused.json()["error"]["code"] == "token_reused"
    cleared = set_cookies(reused)["sw_refresh"]
    assert cleared["value"] == "" and int(str(cleared["max-age"])) == 0
    assert cleared["path"] == "/api/auth/refresh"
    gone = await client.get("/api/auth/sessions", headers=bearer(third.json()))
    assert gone.status_code == 401
    missing = await client.post("/api/auth/refresh", headers=ORIGIN)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_token"
    assert "set-cookie" not in missing.headers  # nothing sent, nothing to delete


async def test_logout_revokes_and_clears_the_cookie(client: httpx.AsyncClient) -> None:
    login = await logged_in(client)
    out = await client.post("/api/auth/logout", headers=bearer(login.json()))
    assert out.status_code == 204
    cleared = set_cookies(out)["sw_refresh"]
    assert cleared["value"] == "" and cleared["path"] == "/api/auth/refresh"
    assert "httponly" in str(cleared["flags"]) and "samesite=strict" in str(cleared["flags"])
    after = await refresh(client, refresh_cookie(login), **ORIGIN)
    assert after.status_code == 401 and after.json()["error"]["code"] == "invalid_token"


async def test_secure_can_be_turned_off_for_localhost_and_the_path_set(url: str) -> None:
    sw = SessionWard(url, settings=SETTINGS)
    cookie = RefreshCookie(name="rt", secure=False, path="/auth")

    def build(app: FastAPI) -> None:
        app.include_router(sw.auth_router(cookie=cookie), prefix="/auth")

    async with serving(sw, build, base_url="http://localhost:8000") as client:
        body = {"username": new_name(), "password": PASSWORD}
        await client.post("/auth/register", json=body)
        login = await client.post("/auth/login", json=body)
        attrs = set_cookies(login)["rt"]
        assert "secure" not in attrs and attrs["path"] == "/auth" and attrs["httponly"] is True
        headers = {"Cookie": f"rt={attrs['value']}", "Origin": "http://localhost:8000"}
        assert (await client.post("/auth/refresh", headers=headers)).status_code == 200


async def test_the_access_cookie_is_csrf_checked_on_unsafe_methods_only(url: str) -> None:
    sw = SessionWard(url, settings=SETTINGS, cookie="access")

    def build(app: FastAPI) -> None:
        app.include_router(sw.auth_router(), prefix="/auth")

        @app.get("/me")
        async def me(who: Principal = Depends(sw.principal)) -> str:  # noqa: B008
            return who.user_id

        @app.post("/orders")
        async def order(who: Principal = Depends(sw.principal)) -> str:  # noqa: B008
            return who.session.session_id

    async with serving(sw, build) as client:
        body = {"username": new_name(), "password": PASSWORD}
        await client.post("/auth/register", json=body)
        tokens = (await client.post("/auth/login", json=body)).json()
        cookie = {"Cookie": f"access={tokens['access_token']}"}
        assert (await client.get("/me", headers=cookie)).status_code == 200
        forged = await client.post("/orders", headers={**cookie, "Origin": "https://evil.example"})
        assert forged.status_code == 403 and forged.json()["error"]["code"] == "csrf_failed"
        assert (await client.post("/orders", headers=cookie)).status_code == 403
        assert (await client.post("/orders", headers={**cookie, **ORIGIN})).status_code == 200
        # a bearer header is never CSRF-checked: a browser does not add one by itself
        evil = {**bearer(tokens), "Origin": "https://evil.example"}
        assert (await client.post("/orders", headers=evil)).status_code == 200
        logout = await client.post(
            "/auth/logout", headers={**cookie, "Origin": "https://evil.example"}
        )
        assert logout.status_code == 403
        assert (await client.get("/me", headers=cookie)).status_code == 200


async def test_delete_on_the_refresh_path_logs_out_by_the_cookie(client: httpx.AsyncClient) -> None:
    login = await logged_in(client)
    cookie = {"Cookie": f"sw_refresh={refresh_cookie(login)}"}
    forged = await client.delete(
        "/api/auth/refresh", headers={**cookie, "Origin": TRUSTED + ".evil"}
    )
    assert forged.status_code == 403 and forged.json()["error"]["code"] == "csrf_failed"
    assert (await client.get("/api/auth/sessions", headers=bearer(login.json()))).status_code == 200
    out = await client.delete("/api/auth/refresh", headers={**cookie, **ORIGIN})
    assert out.status_code == 204
    assert set_cookies(out)["sw_refresh"]["value"] == ""
    assert (await client.get("/api/auth/sessions", headers=bearer(login.json()))).status_code == 401
    again = await client.delete("/api/auth/refresh", headers={**cookie, **ORIGIN})
    assert again.status_code == 204  # nothing left to revoke; the cookie is deleted again
    bare = await client.delete("/api/auth/refresh", headers=ORIGIN)
    assert bare.status_code == 204 and "set-cookie" not in bare.headers
