"""SQLite store: one file, WAL, safe for several threads and processes.

One writer thread runs every write as its own ``BEGIN IMMEDIATE`` transaction, so writes
from this process never fight each other for the lock; other processes wait on
``busy_timeout``. Reader threads (``?readers=``, default 2) each keep a connection for
WAL's lock-free reads. Each capability is a part (:mod:`.sessions`, :mod:`.state`,
:mod:`.users`, :mod:`.limits`, :mod:`.budgets`, :mod:`.jobs`) run on these threads.
"""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio.to_thread

from ...clock import Clock, SystemClock
from ...errors import ConfigurationError
from ...urls import SqliteOptions, StoreURL
from ..records import PoolStats
from ..retry import Retrier
from .budgets import SqliteBudgets
from .capacity import SqliteCapacity
from .jobs import SqliteJobs
from .limits import SqliteLimits
from .parts import Conn
from .schema import migrate
from .sessions import SqliteSessions
from .state import SqliteState
from .users import SqliteUsers
from .worker import Worker

T = TypeVar("T")


def _is_transient(exc: BaseException) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    return isinstance(exc, sqlite3.OperationalError) and name.startswith(
        ("SQLITE_BUSY", "SQLITE_LOCKED")
    )


def _is_unavailable(exc: BaseException) -> bool:
    """A full disk or an I/O error: the store cannot write now (503 ``store_unavailable``),
    and the transaction was already rolled back, so it is not retried in the request."""
    name = getattr(exc, "sqlite_errorname", "")
    return isinstance(exc, sqlite3.DatabaseError) and name.startswith(
        ("SQLITE_FULL", "SQLITE_IOERR")
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


class SqliteStore(
    SqliteSessions,
    SqliteState,
    SqliteUsers,
    SqliteLimits,
    SqliteBudgets,
    SqliteJobs,
    SqliteCapacity,
):
    def __init__(self, url: StoreURL, *, clock: Clock | None = None) -> None:
        assert isinstance(url.options, SqliteOptions)
        self.url = url
        self._options = url.options
        self._clock = clock or SystemClock()
        self._retry = Retrier("sqlite", _is_transient, unavailable=_is_unavailable)
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

    @property
    def calls(self) -> int:
        """Calls handed to the connection threads so far (SQLite's round trips)."""
        return sum(w.calls for w in [*self._readers, *([self._writer] if self._writer else [])])

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


def _enable_wal(conn: Conn) -> str:
    mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
    if mode.lower() != "wal":
        raise ConfigurationError(f"SQLite refused WAL mode (got {mode!r}); is the file on NFS?")
    return mode
