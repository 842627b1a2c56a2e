"""SQLite store: one file, WAL, safe for several threads and processes.

One writer thread runs every write as its own ``BEGIN IMMEDIATE`` transaction, so writes
from this process never fight each other for the lock; other processes wait on
``busy_timeout``. Reader threads (``?readers=``, default 2) each keep a connection for
WAL's lock-free reads. A validate is a plain read; only when the touch interval has passed
does it send a conditional ``UPDATE`` (guarded by the ``last_seen_at`` it read) to the writer.
"""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from ..clock import Clock, SystemClock
from ..errors import ConfigurationError
from ..rules.sessions import refresh_of_spent, stamp_new_session, touch_due
from ..rules.state import version_matches
from ..urls import SqliteOptions, StoreURL
from .records import (
    ById,
    ByToken,
    Created,
    Lookup,
    NewSessionRow,
    PoolStats,
    Refreshed,
    SessionKey,
    SessionRow,
    StateRow,
    StateScope,
    StateWrite,
)
from .retry import Retrier
from .sqlite_accounts import SqliteAccounts
from .sqlite_jobs import SqliteJobs
from .sqlite_ledger import SqliteLedger
from .sqlite_schema import migrate
from .sqlite_worker import Worker

T = TypeVar("T")
Conn = sqlite3.Connection

_COLUMNS = (
    "session_id, user_id, token_hash, created_at, last_seen_at, idle_timeout, "
    "idle_expires_at, expires_at, revoked_at, ip, user_agent, metadata, generation, "
    "prev_token_hash, rotated_at"
)
_SELECT = f"SELECT {_COLUMNS} FROM sw_sessions"
_LIVE = "revoked_at IS NULL AND idle_expires_at > ?"
_STATE_KEY = "kind = ? AND user_id = ? AND owner_id = ? AND name = ?"


def _is_transient(exc: BaseException) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    return isinstance(exc, sqlite3.OperationalError) and name.startswith(
        ("SQLITE_BUSY", "SQLITE_LOCKED")
    )


def _transaction(fn: Callable[[Conn], T]) -> Callable[[Conn], T]:
    def job(conn: Conn) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    return job


def _row(values: Sequence[Any] | None) -> SessionRow | None:
    return None if values is None else SessionRow(*values)


def _key_sql(key: SessionKey) -> tuple[str, tuple[str, ...]]:
    if isinstance(key, ByToken):
        return "token_hash = ?", (key.token_hash,)
    return "session_id = ? AND user_id = ?", (key.session_id, key.user_id)


def _scope_params(scope: StateScope) -> tuple[str, str, str]:
    return (scope.kind, scope.user_id, scope.session_id or "")


class SqliteStore(SqliteAccounts, SqliteLedger, SqliteJobs):
    def __init__(self, url: StoreURL, *, clock: Clock | None = None) -> None:
        assert isinstance(url.options, SqliteOptions)
        self.url = url
        self._options = url.options
        self._clock = clock or SystemClock()
        self._retry = Retrier("sqlite", _is_transient)
        self._writer: Worker | None = None
        self._readers: list[Worker] = []
        self._next_reader = itertools.cycle([0])

    @property
    def backend(self) -> str:
        return "sqlite"

    def _now(self) -> float:
        return self._clock.now()

    # lifecycle

    def _connect(self) -> Conn:
        path = Path(self._options.path)
        if not path.parent.is_dir():
            raise ConfigurationError(f"the directory for the SQLite file {path} does not exist")
        conn = sqlite3.connect(
            path, timeout=self._options.busy_timeout, isolation_level=None,
            check_same_thread=False,
        )  # fmt: skip
        conn.execute(f"PRAGMA busy_timeout = {int(self._options.busy_timeout * 1000)}")
        conn.execute(f"PRAGMA synchronous = {self._options.synchronous.upper()}")
        return conn

    async def open(self) -> None:
        writer = Worker("sessionward-sqlite-writer", self._connect)
        await self._retry(lambda: anyio.to_thread.run_sync(writer.start))
        self._writer = writer
        await self._retry(lambda: writer.call(_enable_wal))
        await self._retry(lambda: writer.call(migrate))
        for n in range(self._options.readers):
            reader = Worker(f"sessionward-sqlite-reader-{n}", self._connect)
            await anyio.to_thread.run_sync(reader.start)
            self._readers.append(reader)
        self._next_reader = itertools.cycle(range(len(self._readers)))

    async def aclose(self) -> None:
        workers = [*self._readers, *([self._writer] if self._writer else [])]
        self._readers, self._writer = [], None
        for worker in workers:
            await anyio.to_thread.run_sync(worker.stop)

    async def ping(self) -> float:
        started = time.perf_counter()
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())
        return time.perf_counter() - started

    async def server_version(self) -> str:
        return sqlite3.sqlite_version

    def pool_stats(self) -> PoolStats:
        workers = [*self._readers, *([self._writer] if self._writer else [])]
        busy = sum(w.busy for w in workers)
        waiting = sum(w.queued for w in workers)
        return PoolStats(in_use=busy, idle=len(workers) - busy, waiting=waiting,
                         max_size=len(workers))  # fmt: skip

    async def _read(self, job: Callable[[Conn], T]) -> T:
        if not self._readers:
            raise ConfigurationError("the SQLite store is not open")
        reader = self._readers[next(self._next_reader)]
        return await self._retry(lambda: reader.call(job))

    async def _write(self, job: Callable[[Conn], T]) -> T:
        writer = self._writer
        if writer is None:
            raise ConfigurationError("the SQLite store is not open")
        return await self._retry(lambda: writer.call(_transaction(job)))

    # sessions

    async def create_session(
        self, new: NewSessionRow, *, max_sessions: int, evict_oldest: bool
    ) -> Created:
        def job(conn: Conn) -> Created:
            existing = _row(conn.execute(f"{_SELECT} WHERE session_id = ?",
                                         (new.session_id,)).fetchone())  # fmt: skip
            if existing is not None:
                if existing.token_hash != new.token_hash:
                    raise ConfigurationError("session id collision")
                return Created(existing, ())
            now = self._clock.now()
            live = _live_sessions(conn, new.user_id, now)
            excess = len(live) - max_sessions + 1
            if excess > 0 and not evict_oldest:
                return Created(None, ())
            evicted = [row.session_id for row in live[: max(excess, 0)]]
            _revoke(conn, new.user_id, evicted, now)
            row = stamp_new_session(new, now)
            conn.execute(f"INSERT INTO sw_sessions ({_COLUMNS}) VALUES ({_marks(15)})",
                         _values(row))  # fmt: skip
            return Created(row, tuple(evicted))

        return await self._write(job)

    async def find_session(self, key: SessionKey, *, touch_interval: float | None) -> Lookup:
        where, params = _key_sql(key)

        def read(conn: Conn) -> Lookup:
            return Lookup(_row(conn.execute(f"{_SELECT} WHERE {where}", params).fetchone()),
                          self._clock.now())  # fmt: skip

        found = await self._read(read)
        if found.row is None or not touch_due(found.row, found.now, touch_interval):
            return found
        seen = found.row

        def touch(conn: Conn) -> Lookup:
            now = self._clock.now()
            conn.execute(
                "UPDATE sw_sessions SET last_seen_at = ?, "
                "idle_expires_at = min(? + idle_timeout, expires_at) "
                f"WHERE session_id = ? AND last_seen_at = ? AND {_LIVE}",
                (now, now, seen.session_id, seen.last_seen_at, now),
            )
            return Lookup(_row(conn.execute(f"{_SELECT} WHERE {where}", params).fetchone()), now)

        return await self._write(touch)

    async def rotate_session(self, key: SessionKey, new_token_hash: str) -> Lookup:
        where, params = _key_sql(key)

        def job(conn: Conn) -> Lookup:
            now = self._clock.now()
            row = _row(conn.execute(f"{_SELECT} WHERE {where}", params).fetchone())
            if row is None or not row.is_live(now):
                return Lookup(row, now)
            return Lookup(_rotate(conn, row, new_token_hash, now), now)

        return await self._write(job)

    async def refresh_session(
        self, token_hash: str, new_token_hash: str, *, grace: float
    ) -> Refreshed:
        def job(conn: Conn) -> Refreshed:
            now = self._clock.now()
            row = _row(conn.execute(f"{_SELECT} WHERE token_hash = ?", (token_hash,)).fetchone())
            if row is not None:
                if not row.is_live(now):
                    return Refreshed("dead", row, now)
                return Refreshed("rotated", _rotate(conn, row, new_token_hash, now), now)
            row = _row(conn.execute(
                f"{_SELECT} WHERE session_id = "
                "(SELECT session_id FROM sw_spent_tokens WHERE token_hash = ?)", (token_hash,),
            ).fetchone())  # fmt: skip
            if row is None:
                return Refreshed("unknown", None, now)
            outcome = refresh_of_spent(row, token_hash, new_token_hash, grace, now)
            if outcome == "reused" and _revoke(conn, row.user_id, [row.session_id], now):
                row = replace(row, revoked_at=now)
            return Refreshed(outcome, row, now)

        return await self._write(job)

    async def revoke_session(self, key: ById) -> bool:
        def job(conn: Conn) -> bool:
            return _revoke(conn, key.user_id, [key.session_id], self._clock.now()) == 1

        return await self._write(job)

    async def revoke_user_sessions(self, user_id: str, *, keep: str | None = None) -> int:
        def job(conn: Conn) -> int:
            now = self._clock.now()
            ids = [r.session_id for r in _live_sessions(conn, user_id, now)]
            return _revoke(conn, user_id, [i for i in ids if i != keep], now)

        return await self._write(job)

    async def list_sessions(self, user_id: str) -> tuple[list[SessionRow], float]:
        def job(conn: Conn) -> tuple[list[SessionRow], float]:
            now = self._clock.now()
            return _live_sessions(conn, user_id, now), now

        return await self._read(job)

    async def sweep_sessions(self, limit: int) -> int:
        def job(conn: Conn) -> int:
            dead = conn.execute(
                "SELECT session_id, user_id FROM sw_sessions WHERE idle_expires_at <= ? "
                "LIMIT ?", (self._clock.now(), limit),
            ).fetchall()  # fmt: skip
            for session_id, user_id in dead:
                conn.execute("DELETE FROM sw_sessions WHERE session_id = ?", (session_id,))
                conn.execute("DELETE FROM sw_spent_tokens WHERE session_id = ?", (session_id,))
                _drop_session_state(conn, user_id, session_id)
                for table in ("sw_budgets", "sw_ledger", "sw_holds"):
                    conn.execute(f"DELETE FROM {table} WHERE user_id = ? AND session_id = ?",
                                 (user_id, session_id))  # fmt: skip
            return len(dead)

        return await self._write(job)

    # state

    async def get_state(self, scope: StateScope, name: str) -> StateRow | None:
        def job(conn: Conn) -> StateRow | None:
            if not _owner_live(conn, scope, self._clock.now()):
                return None
            found = conn.execute(f"SELECT data, version FROM sw_state WHERE {_STATE_KEY}",
                                 (*_scope_params(scope), name)).fetchone()  # fmt: skip
            return None if found is None else StateRow(found[0], found[1])

        return await self._read(job)

    async def put_state(
        self, scope: StateScope, name: str, data: str, *, expected_version: int | None
    ) -> StateWrite:
        def job(conn: Conn) -> StateWrite:
            current = _state_version(conn, scope, name)
            if not _owner_live(conn, scope, self._clock.now()):
                return StateWrite(False, current, owner_live=False)
            if not version_matches(current, expected_version):
                return StateWrite(False, current)
            version = (current or 0) + 1
            conn.execute(
                "INSERT INTO sw_state (kind, user_id, owner_id, name, data, version) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, user_id, owner_id, name) "
                "DO UPDATE SET data = excluded.data, version = excluded.version",
                (*_scope_params(scope), name, data, version),
            )
            return StateWrite(True, version)

        return await self._write(job)

    async def delete_state(
        self, scope: StateScope, name: str, *, expected_version: int | None
    ) -> StateWrite:
        def job(conn: Conn) -> StateWrite:
            current = _state_version(conn, scope, name)
            if not _owner_live(conn, scope, self._clock.now()):
                return StateWrite(False, current, owner_live=False)
            if current is None or not version_matches(current, expected_version):
                return StateWrite(False, current)
            conn.execute(f"DELETE FROM sw_state WHERE {_STATE_KEY}", (*_scope_params(scope), name))
            return StateWrite(True, None)

        return await self._write(job)

    async def list_state(self, scope: StateScope) -> list[str]:
        def job(conn: Conn) -> list[str]:
            if not _owner_live(conn, scope, self._clock.now()):
                return []
            rows = conn.execute(
                "SELECT name FROM sw_state WHERE kind = ? AND user_id = ? AND owner_id = ? "
                "ORDER BY name", _scope_params(scope),
            ).fetchall()  # fmt: skip
            return [name for (name,) in rows]

        return await self._read(job)


def _enable_wal(conn: Conn) -> str:
    mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
    if mode.lower() != "wal":
        raise ConfigurationError(f"SQLite refused WAL mode (got {mode!r}); is the file on NFS?")
    return mode


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _values(row: SessionRow) -> tuple[Any, ...]:
    return (
        row.session_id, row.user_id, row.token_hash, row.created_at, row.last_seen_at,
        row.idle_timeout, row.idle_expires_at, row.expires_at, row.revoked_at, row.ip,
        row.user_agent, row.metadata, row.generation, row.prev_token_hash, row.rotated_at,
    )  # fmt: skip


def _live_sessions(conn: Conn, user_id: str, now: float) -> list[SessionRow]:
    rows = conn.execute(
        f"{_SELECT} WHERE user_id = ? AND {_LIVE} ORDER BY created_at, rowid",
        (user_id, now),
    ).fetchall()
    return [SessionRow(*values) for values in rows]


def _rotate(conn: Conn, row: SessionRow, new_token_hash: str, now: float) -> SessionRow:
    conn.execute(
        "UPDATE sw_sessions SET token_hash = ?, generation = generation + 1, "
        "prev_token_hash = token_hash, rotated_at = ?, last_seen_at = ?, "
        "idle_expires_at = min(? + idle_timeout, expires_at) WHERE session_id = ?",
        (new_token_hash, now, now, now, row.session_id),
    )
    conn.execute("INSERT INTO sw_spent_tokens (token_hash, session_id) VALUES (?, ?)",
                 (row.token_hash, row.session_id))  # fmt: skip
    rotated = _row(conn.execute(f"{_SELECT} WHERE session_id = ?", (row.session_id,)).fetchone())
    assert rotated is not None
    return rotated


def _revoke(conn: Conn, user_id: str, session_ids: list[str], now: float) -> int:
    revoked = 0
    for session_id in session_ids:
        cursor = conn.execute(
            f"UPDATE sw_sessions SET revoked_at = ? WHERE session_id = ? AND user_id = ? "
            f"AND {_LIVE}", (now, session_id, user_id, now),
        )  # fmt: skip
        if cursor.rowcount:
            _drop_session_state(conn, user_id, session_id)
            revoked += 1
    return revoked


def _drop_session_state(conn: Conn, user_id: str, session_id: str) -> None:
    conn.execute(
        "DELETE FROM sw_state WHERE kind = 'session' AND user_id = ? AND owner_id = ?",
        (user_id, session_id),
    )


def _state_version(conn: Conn, scope: StateScope, name: str) -> int | None:
    found = conn.execute(f"SELECT version FROM sw_state WHERE {_STATE_KEY}",
                         (*_scope_params(scope), name)).fetchone()  # fmt: skip
    return None if found is None else int(found[0])


def _owner_live(conn: Conn, scope: StateScope, now: float) -> bool:
    if scope.kind == "user":
        return True
    found = conn.execute(
        f"SELECT 1 FROM sw_sessions WHERE session_id = ? AND user_id = ? AND {_LIVE}",
        (scope.session_id, scope.user_id, now),
    ).fetchone()
    return found is not None
