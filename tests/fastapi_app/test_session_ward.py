"""SessionWard's lifespan, its composition with the app's own, the worker and cookie mode."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI

from sessionward import Principal, Settings
from sessionward.fastapi import SessionWard, from_app, install_handlers
from sessionward.jobs.builtin import PII_SCAN
from tests.conftest import SHARED_BACKENDS, url_for

pytestmark = pytest.mark.anyio
SETTINGS = Settings.defaults(secret_key="a test secret of at least thirty-two chars")


@pytest.fixture(params=SHARED_BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return url_for(str(request.param), tmp_path)


async def test_the_ward_is_open_only_inside_the_lifespan_and_wraps_the_apps(url: str) -> None:
    sw = SessionWard(url, settings=SETTINGS)
    seen: list[str] = []

    @asynccontextmanager
    async def mine(app: FastAPI) -> AsyncIterator[None]:
        seen.append(f"start {await sw.ward.ping() is not None}")
        yield
        seen.append("stop, ward still open" if sw.ward else "?")

    app = FastAPI(lifespan=sw.wrap(mine))
    with pytest.raises(RuntimeError, match="lifespan"):
        _ = sw.ward
    async with app.router.lifespan_context(app):
        assert sw.ward is not None
    assert seen == ["start True", "stop, ward still open"]
    with pytest.raises(RuntimeError, match="lifespan"):
        _ = sw.ward


async def test_the_worker_runs_jobs_while_the_app_runs(url: str) -> None:
    sw = SessionWard(url, settings=SETTINGS, worker=True, kinds=[PII_SCAN])
    app = FastAPI(lifespan=sw.lifespan)
    async with app.router.lifespan_context(app):
        user = await sw.ward.users.create(f"u{uuid.uuid4().hex[:12]}", "a long enough password")
        job = await sw.ward.jobs.submit(user.user_id, "pii_scan", {"text": "mail a@b.example"})
        with anyio.fail_after(20):
            while (job := await sw.ward.jobs.get(user.user_id, job.job_id)).finished_at is None:
                await anyio.sleep(0.05)
        assert job.status == "succeeded"


async def test_cookie_mode_reads_the_access_token_from_the_cookie(url: str) -> None:
    sw = SessionWard(url, settings=SETTINGS, cookie="access")
    app = FastAPI(lifespan=sw.lifespan)
    install_handlers(app)

    @app.get("/me")
    # a local's Annotated[...] is a string FastAPI cannot resolve: a default instead
    async def me(who: Principal = Depends(sw.principal)) -> str:  # noqa: B008
        return who.user_id

    async with app.router.lifespan_context(app):
        name = f"u{uuid.uuid4().hex[:12]}"
        user = await sw.ward.users.create(name, "a long enough password")
        pair = await sw.ward.auth.login(name, "a long enough password")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            answer = await client.get("/me", headers={"Cookie": f"access={pair.access_token}"})
            assert answer.json() == user.user_id
            assert (await client.get("/me")).status_code == 401
            await sw.ward.auth.logout(await sw.ward.auth.authenticate(pair.access_token))
            revoked = await client.get("/me", headers={"Cookie": f"access={pair.access_token}"})
            assert revoked.status_code == 401


async def test_from_app_finds_the_apps_session_ward(url: str) -> None:
    sw = SessionWard(url, settings=SETTINGS)
    app = FastAPI(lifespan=sw.lifespan)
    install_handlers(app)
    router = APIRouter()  # as in a module that cannot import the app's SessionWard

    @router.get("/me")
    async def me(who: Principal = Depends(from_app.principal)) -> str:  # noqa: B008
        return who.user_id

    app.include_router(router)
    async with app.router.lifespan_context(app):
        name = f"u{uuid.uuid4().hex[:12]}"
        user = await sw.ward.users.create(name, "a long enough password")
        pair = await sw.ward.auth.login(name, "a long enough password")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            auth = {"Authorization": f"Bearer {pair.access_token}"}
            assert (await client.get("/me", headers=auth)).json() == user.user_id
            assert (await client.get("/me")).status_code == 401


async def test_from_app_without_a_session_ward_says_what_to_do() -> None:
    app = FastAPI()

    @app.get("/me")
    async def me(who: Principal = Depends(from_app.principal)) -> str:  # noqa: B008
        return who.user_id

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        with pytest.raises(RuntimeError, match=r"pass SessionWard\.lifespan"):
            await client.get("/me")


async def test_a_route_limit_counts_each_inclusion_and_each_path_apart(url: str) -> None:
    """The same router under two prefixes: each prefix has its own count, and the count is
    per route template, not per concrete path (two ids share one)."""
    sw = SessionWard(url, settings=SETTINGS)
    router = APIRouter()

    @router.get("/items/{item_id}", dependencies=[Depends(sw.limit("2/minute"))])
    async def item(item_id: str) -> dict[str, str]:
        return {"item": item_id}

    app = FastAPI(lifespan=sw.lifespan)
    install_handlers(app)
    app.include_router(router, prefix="/a")
    app.include_router(router, prefix="/b")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            first = [(await client.get(f"/a/items/{n}")).status_code for n in ("x", "y", "z")]
            other = [(await client.get(f"/b/items/{n}")).status_code for n in ("x", "y", "z")]
    assert first == [200, 200, 429]
    assert other == [200, 200, 429]
