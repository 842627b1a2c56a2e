"""Session create / validate / state update per backend, beside the raw driver round trip.

Each backend's raw round trip (SQLite: a primary-key read on a plain sqlite3 connection;
Redis: a GET through the store's own client and pool; PostgreSQL: SELECT 1 through a
psycopg pool of the same size) runs interleaved with our operations in the same run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sessionward import Settings, open_ward
from sessionward.stores.records import StateScope
from sessionward.ward import Ward

from .measure import Op, Result, interleaved, sync_measure

USERS = 1000
CONCURRENT = 32


async def bench_sessions(url: str, *, per_task: int) -> list[Result]:
    settings = Settings(sessions_per_user=1000)
    async with open_ward(url, settings=settings, sweep=False) as ward:
        ops = await _operations(ward)
        raw, cleanup = await _raw(ward, url)
        results = []
        try:
            for tasks, n in ((1, per_task), (CONCURRENT, max(per_task // 8, 50))):
                results += await interleaved({**raw, **ops}, tasks=tasks, per_task=n)
        finally:
            await cleanup()
        return results


async def _operations(ward: Ward) -> dict[str, Op]:
    tokens = [(await ward.sessions.create(f"user{i}")).token for i in range(USERS)]

    async def create(i: int) -> object:
        return await ward.sessions.create(f"user{i % USERS}", ip="203.0.113.9")

    async def validate(i: int) -> object:
        return await ward.sessions.validate(tokens[i % USERS])

    async def update(i: int) -> object:
        scope = StateScope("user", f"user{i % USERS}")
        return await ward.state.put(scope, "prefs", {"theme": "dark", "n": i})

    return {"create": create, "validate": validate, "update": update}


Cleanup = Callable[[], Awaitable[object]]


async def _nothing() -> None:
    return None


async def _raw(ward: Ward, url: str) -> tuple[dict[str, Op], Cleanup]:
    if ward.backend == "redis":
        return await _raw_redis(ward)
    if ward.backend == "postgresql":
        return await _raw_postgres(url)
    return {}, _nothing


async def _raw_redis(ward: Ward) -> tuple[dict[str, Op], Cleanup]:
    client: Any = ward.store._client  # type: ignore[attr-defined]
    await client.set("swbench:raw", "x" * 200)

    async def get(i: int) -> object:
        return await client.get("swbench:raw")

    async def cleanup() -> object:
        return await client.delete("swbench:raw")

    return {"raw GET": get}, cleanup


async def _raw_postgres(url: str) -> tuple[dict[str, Op], Cleanup]:
    from psycopg_pool import AsyncConnectionPool

    pool = AsyncConnectionPool(url.split("?")[0], min_size=10, max_size=10, open=False)
    await pool.open(wait=True)

    async def select1(i: int) -> object:
        async with pool.connection() as conn:
            return await (await conn.execute("SELECT 1")).fetchone()

    return {"raw SELECT 1": select1}, pool.close


def raw_sqlite(directory: Path, *, ops: int) -> list[Result]:
    conn = sqlite3.connect(directory / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(str(i), "x" * 200) for i in range(USERS)])

    def read(i: int) -> object:
        return conn.execute("SELECT v FROM t WHERE k = ?", (str(i % USERS),)).fetchone()

    try:
        return [sync_measure("raw PK read", read, ops=ops)]
    finally:
        conn.close()
