"""Session create / validate / state update per backend, beside the raw driver round trip."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from sessionward import Settings, open_ward
from sessionward.stores.base import StateScope

from .measure import Result, measure, sync_measure

USERS = 1000


async def bench_sessions(url: str, *, per_task: int, concurrent: int = 32) -> list[Result]:
    settings = Settings(sessions_per_user=1000)
    results = []
    async with open_ward(url, settings=settings, sweep=False) as ward:
        tokens: list[str] = []

        async def create(i: int) -> object:
            new = await ward.sessions.create(f"user{i % USERS}", ip="203.0.113.9")
            tokens.append(new.token)
            return new

        async def validate(i: int) -> object:
            return await ward.sessions.validate(tokens[i % len(tokens)])

        async def update(i: int) -> object:
            scope = StateScope("user", f"user{i % USERS}")
            return await ward.state.put(scope, "prefs", {"theme": "dark", "n": i})

        for tasks, n in ((1, per_task), (concurrent, max(per_task // concurrent, 50))):
            for name, op in (("create", create), ("validate", validate), ("update", update)):
                results.append(await measure(name, op, tasks=tasks, per_task=n))
    return results


async def raw_redis(url: str, *, per_task: int, concurrent: int = 32) -> list[Result]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url.split("?")[0])
    await client.set("swbench:raw", "x" * 200)

    async def get(i: int) -> object:
        return await client.get("swbench:raw")

    try:
        return [
            await measure("raw GET", get, tasks=1, per_task=per_task),
            await measure(
                "raw GET", get, tasks=concurrent, per_task=max(per_task // concurrent, 50)
            ),
        ]
    finally:
        await client.delete("swbench:raw")
        await client.aclose()


async def raw_postgres(url: str, *, per_task: int, concurrent: int = 32) -> list[Result]:
    from psycopg_pool import AsyncConnectionPool

    async with AsyncConnectionPool(url.split("?")[0], min_size=10, max_size=10) as pool:

        async def select1(i: int) -> object:
            async with pool.connection() as conn:
                return await (await conn.execute("SELECT 1")).fetchone()

        return [
            await measure("raw SELECT 1", select1, tasks=1, per_task=per_task),
            await measure(
                "raw SELECT 1", select1, tasks=concurrent, per_task=max(per_task // concurrent, 50)
            ),
        ]


def raw_sqlite(*, ops: int) -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(str(i), "x" * 200) for i in range(USERS)])

        def read(i: int) -> object:
            return conn.execute("SELECT v FROM t WHERE k = ?", (str(i % USERS),)).fetchone()

        try:
            return [sync_measure("raw PK read", read, ops=ops)]
        finally:
            conn.close()
