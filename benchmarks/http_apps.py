"""The baselines of the HTTP load benchmark, each a tiny FastAPI app (uvicorn factories).

- ``bare``: ``GET /ok`` returning ``{"ok": true}``;
- ``raw_redis``: ``GET /raw`` does one redis-py ``GET`` of the ``sid`` cookie's session;
- ``raw_postgres``: ``GET /raw`` does one psycopg ``SELECT`` of it (a pool, autocommit);
- ``star``: starsessions on Redis, ``GET /star`` loads the session (and it is written back).

A missing session is a 401, so a broken setup shows up as non-2xx responses.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

REDIS_URL = os.environ.get("SWBENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("SWBENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PREFIX = "swbench-http:"
TABLE = "swbench_http.sessions"
DENIED = JSONResponse({"ok": False}, status_code=401)


def bare() -> FastAPI:
    app = FastAPI()

    @app.get("/ok")
    async def ok() -> dict[str, bool]:
        return {"ok": True}

    return app


def raw_redis() -> FastAPI:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await client.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/raw", response_model=None)
    async def raw(request: Request) -> dict[str, Any] | JSONResponse:
        found = await client.get(PREFIX + "raw:" + request.cookies.get("sid", ""))
        return DENIED if found is None else {"ok": True, "session": found.decode()}

    return app


def raw_postgres() -> FastAPI:
    from psycopg_pool import AsyncConnectionPool

    pool = AsyncConnectionPool(POSTGRES_URL, min_size=10, max_size=10, open=False,
                               kwargs={"autocommit": True})  # fmt: skip

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await pool.open(wait=True)
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/raw", response_model=None)
    async def raw(request: Request) -> dict[str, Any] | JSONResponse:
        async with pool.connection() as conn:
            cursor = await conn.execute(
                f"SELECT data FROM {TABLE} WHERE id = %s",
                (request.cookies.get("sid", ""),),
            )
            row = await cursor.fetchone()
        return DENIED if row is None else {"ok": True, "session": row[0]}

    return app


def star() -> FastAPI:
    from starsessions import SessionMiddleware, load_session
    from starsessions.stores.redis import RedisStore

    app = FastAPI()

    @app.get("/star/login")
    async def login(request: Request) -> dict[str, bool]:
        await load_session(request)
        request.session["user_id"] = "bench-user"
        return {"ok": True}

    @app.get("/star", response_model=None)
    async def read(request: Request) -> dict[str, Any] | JSONResponse:
        await load_session(request)
        user = request.session.get("user_id")
        return DENIED if user is None else {"ok": True, "user_id": user}

    store = RedisStore(REDIS_URL, prefix=PREFIX + "star:")
    app.add_middleware(SessionMiddleware, store=store, lifetime=3600, cookie_https_only=False)
    return app
