"""SQLite specifics: pragmas, schema versioning, owned connections, several processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import threading
from pathlib import Path

import anyio
import pytest

from sessionward import ConfigurationError, Settings, StorageError, open_ward
from sessionward.stores import create_store
from sessionward.stores.sqlite import SqliteStore
from sessionward.stores.sqlite.schema import SCHEMA_VERSION
from sessionward.testing import wait_until_async
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


def _charge_storm(url: str, user_id: str, session_id: str, acknowledged: str) -> None:
    """Charge until killed; append each charge id to a file once its commit returned."""

    async def storm() -> None:
        async with open_ward(url, settings=Settings(budget_default=10**12), sweep=False) as ward:
            session = await ward.sessions.get(user_id, session_id)
            with open(acknowledged, "a", buffering=1) as out:
                for n in range(1_000_000):
                    charge = await ward.budgets.charge(session, 1 + n % 50, f"k{n}")
                    out.write(f"{charge.charge_id} {charge.amount}\n")

    anyio.run(storm)


async def test_a_killed_charge_storm_loses_nothing_committed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    acknowledged = tmp_path / "acknowledged.txt"
    async with open_ward(url, sweep=False) as ward:
        session = (await ward.sessions.create("payer")).session
    spawn = multiprocessing.get_context("spawn")
    args = (url, session.user_id, session.session_id, str(acknowledged))
    child = spawn.Process(target=_charge_storm, args=args)
    child.start()

    async def going() -> bool:
        assert child.is_alive(), "the storm's process died"
        return acknowledged.exists() and acknowledged.read_text().count("\n") >= 300

    await wait_until_async(going, timeout=60, what="300 acknowledged charges")
    os.kill(child.pid or 0, signal.SIGKILL)
    child.join(30)
    acked = dict(line.split() for line in acknowledged.read_text().splitlines() if " " in line)
    async with open_ward(url, settings=Settings(budget_default=10**12), sweep=False) as ward:
        ledger, after = [], None
        while page := await ward.budgets.charges(session, after=after, limit=1000):
            ledger += page
            after = page[-1].entry_id
        recorded = {e.entry_id: e.amount for e in ledger}
        assert all(recorded.get(cid) == int(amount) for cid, amount in acked.items())
        assert len(recorded) >= len(acked)  # at most the one in flight beyond the acknowledged
        assert len(recorded) - len(acked) <= 1
        assert await ward.budgets.verify() == []
        assert (await ward.budgets.get(session)).spent == sum(recorded.values())


async def test_calls_count_each_hand_off_to_a_connection_thread(tmp_path: Path) -> None:
    store = create_store(f"sqlite:///{tmp_path / 's.db'}?readers=2")
    assert isinstance(store, SqliteStore)
    await store.open()
    try:
        before = store.calls
        await store.ping()
        await store.ping()
        assert store.calls == before + 2
        assert await store.get_user("nobody") is None
        assert store.calls == before + 3
    finally:
        await store.aclose()
    assert store.calls == 0  # closed: no threads left to count
