"""SQLite specifics: pragmas, schema versioning, owned connections, several processes."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import anyio
import pytest

from sessionward import ConfigurationError, StorageError, open_ward
from sessionward.stores import create_store
from sessionward.stores.sqlite import SqliteStore
from sessionward.stores.sqlite_schema import SCHEMA_VERSION
from sessionward.testing.races import run_in_processes

pytestmark = pytest.mark.anyio


async def test_file_is_wal_with_versioned_schema(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    async with open_ward(f"sqlite:///{db}", sweep=False):
        pass
    async with open_ward(f"sqlite:///{db}", sweep=False):  # re-opening migrates nothing
        pass
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    versions = [v for (v,) in conn.execute("SELECT version FROM sw_schema_version")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sw_sessions", "sw_state", "sw_schema_version"} <= tables
    conn.close()


async def test_connections_are_per_thread_with_pragmas(tmp_path: Path) -> None:
    store = create_store(f"sqlite:///{tmp_path / 's.db'}?busy_timeout=2.5&readers=3")
    assert isinstance(store, SqliteStore)
    await store.open()
    try:
        pragmas = await store._read(
            lambda c: (
                c.execute("PRAGMA busy_timeout").fetchone()[0],
                c.execute("PRAGMA synchronous").fetchone()[0],
                threading.current_thread().name,
            )
        )
        assert pragmas[:2] == (2500, 1)  # 1 = NORMAL
        assert pragmas[2].startswith("sessionward-sqlite-reader")
        threads = {t.name for t in threading.enumerate() if t.name.startswith("sessionward-sqlite")}
        assert len(threads) == 4  # one writer, three readers: connections never per operation
        stats = store.pool_stats()
        assert (stats.max_size, stats.in_use + stats.idle) == (4, 4)
    finally:
        await store.aclose()
    assert not [t for t in threading.enumerate() if t.name.startswith("sessionward-sqlite")]


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    async with open_ward(f"sqlite:///{db}", sweep=False):
        pass
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO sw_schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="newer than this sessionward"):
        async with open_ward(f"sqlite:///{db}", sweep=False):
            pass


async def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        async with open_ward(f"sqlite:///{tmp_path}/nowhere/s.db", sweep=False):
            pass


async def test_a_held_write_lock_times_out_as_unavailable(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    async with open_ward(f"sqlite:///{db}?busy_timeout=0.05", sweep=False) as ward:
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StorageError, match="unavailable"):
                await ward.sessions.create("alice")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await ward.sessions.create("alice")  # and it recovers by itself


async def _open_and_create(url: str, n: int, barrier: object) -> int:
    await anyio.to_thread.run_sync(barrier.wait)  # type: ignore[attr-defined]
    async with open_ward(url, sweep=False) as ward:
        for _ in range(n):
            await ward.sessions.create("shared")
    return n


async def test_processes_opening_a_new_file_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    done = await run_in_processes([(_open_and_create, (url, 20))] * 4)
    assert done == [20] * 4
    async with open_ward(url, sweep=False) as ward:
        assert ward.settings.sessions_per_user == 10
        assert len(await ward.sessions.list_active("shared")) == 10
