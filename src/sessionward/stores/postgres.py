"""PostgreSQL store: psycopg 3 and an async connection pool, tables in one named schema.

Each operation is one statement, or one short transaction that takes its locks in one
order (the user's advisory lock, then session rows, then state rows), so it is atomic
against any number of processes. Validating a session is one round trip: a statement that
touches the row when the interval has passed and returns it either way. Times come from
the server's ``clock_timestamp()`` unless a clock is injected, so app servers with skewed
clocks agree.

Failures: connection loss, pool timeouts, deadlocks and serialization failures are
retried. A transaction that failed before COMMIT was rolled back, so even a
compare-and-set is retried then; one that lost its connection during COMMIT may have been
applied, so a compare-and-set is not repeated and raises ``StorageUnavailable``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from typing import Any, TypeVar

import anyio
import psycopg
from psycopg import AsyncConnection, sql
from psycopg.conninfo import make_conninfo
from psycopg.errors import TransactionRollback
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..clock import Clock
from ..errors import ConfigurationError, SessionwardError, StorageError
from ..urls import PostgresOptions, StoreURL
from .base import (
    ById,
    Created,
    Lookup,
    NewSessionRow,
    PoolStats,
    SessionKey,
    SessionRow,
    StateRow,
    StateScope,
    StateWrite,
    stamp_new_session,
    version_matches,
)
from .postgres_schema import lock_key, migrate
from .postgres_sql import Params, compose, key_params, state_params
from .retry import Retrier

T = TypeVar("T")
Conn = AsyncConnection[TupleRow]
Query = sql.SQL | sql.Composed


def is_transient(exc: BaseException) -> bool:
    """Connection-level failures, and transactions the server rolled back (deadlock,
    serialization failure): all are subclasses of ``OperationalError``."""
    return isinstance(exc, psycopg.OperationalError | PoolTimeout)


def conninfo(options: PostgresOptions) -> str:
    given: dict[str, str | int | None] = {
        "host": options.host,
        "port": options.port,
        "dbname": options.dbname,
        "user": options.user,
        "password": options.password.get_secret_value() if options.password else None,
        "connect_timeout": options.connect_timeout,
        "sslmode": options.sslmode,
        "sslrootcert": options.sslrootcert,
        "application_name": options.application_name,
    }
    return make_conninfo("", **{k: v for k, v in given.items() if v is not None})


class PostgresStore:
    def __init__(self, url: StoreURL, *, clock: Clock | None = None) -> None:
        assert isinstance(url.options, PostgresOptions)
        if url.options.pool_min > url.options.pool_max:
            raise ConfigurationError(
                f"pool_min={url.options.pool_min} is larger than "
                f"pool_max={url.options.pool_max} in the postgresql:// URL"
            )
        self.url = url
        self._options = url.options
        self._schema = url.options.schema_name
        self._clock = clock
        self._sql = compose(self._schema)
        self._retry = Retrier("postgresql", is_transient)
        self._pool: AsyncConnectionPool[Conn] | None = None

    @property
    def backend(self) -> str:
        return "postgresql"

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r})"

    # lifecycle

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool = self._new_pool()
        try:
            await pool.open(wait=True, timeout=self._options.pool_timeout)
            await self._retry(lambda: self._migrate(pool))
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await pool.close()
            if isinstance(exc, Exception) and not isinstance(exc, SessionwardError):
                raise self._retry.wrap(exc) from exc
            raise
        self._pool = pool

    def _new_pool(self) -> AsyncConnectionPool[Conn]:
        o = self._options
        return AsyncConnectionPool(
            conninfo(o),
            kwargs={"autocommit": True},
            min_size=o.pool_min,
            max_size=o.pool_max,
            timeout=o.pool_timeout,
            name=f"sessionward:{o.schema_name}",
            open=False,
        )

    async def _migrate(self, pool: AsyncConnectionPool[Conn]) -> None:
        async with pool.connection() as conn:
            await migrate(conn, self._schema)

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def ping(self) -> float:
        async def op() -> float:
            async with self._live_pool().connection() as conn:
                start = time.perf_counter()
                await conn.execute("SELECT 1")
                return time.perf_counter() - start

        # A health check reports the store as it is: one attempt, no retries.
        return await self._retry(op, idempotent=False)

    async def server_version(self) -> str:
        row = await self._one(sql.SQL("SHOW server_version"), {})
        assert row is not None
        return str(row[0])

    def pool_stats(self) -> PoolStats:
        if self._pool is None:
            return PoolStats(in_use=0, idle=0, waiting=0, max_size=self._options.pool_max)
        stats = self._pool.get_stats()
        idle = stats.get("pool_available", 0)
        return PoolStats(
            in_use=max(stats.get("pool_size", 0) - idle, 0),
            idle=idle,
            waiting=stats.get("requests_waiting", 0),
            max_size=stats.get("pool_max", self._options.pool_max),
        )

    # plumbing

    def _now(self) -> float | None:
        return None if self._clock is None else self._clock.now()

    def _live_pool(self) -> AsyncConnectionPool[Conn]:
        if self._pool is None:
            raise StorageError("the postgresql store is not open: await store.open() first")
        return self._pool

    async def _one(
        self, query: Query, params: Params, *, idempotent: bool = True
    ) -> TupleRow | None:
        async def op() -> TupleRow | None:
            async with self._live_pool().connection() as conn:
                return await _fetch_one(conn, query, params)

        return await self._retry(op, idempotent=idempotent)

    async def _all(self, query: Query, params: Params) -> list[TupleRow]:
        async def op() -> list[TupleRow]:
            async with self._live_pool().connection() as conn:
                return await _fetch_all(conn, query, params)

        return await self._retry(op)

    async def _transaction(
        self, work: Callable[[Conn], Awaitable[T]], *, idempotent: bool = True
    ) -> T:
        """Run ``work`` in a transaction, retried while a failure proves it was not applied."""

        async def attempt() -> T:
            async with self._live_pool().connection() as conn:
                committing = False
                try:
                    async with conn.transaction():
                        result = await work(conn)
                        committing = True
                except psycopg.OperationalError as exc:
                    if committing and not idempotent and not isinstance(exc, TransactionRollback):
                        raise self._retry.wrap(exc) from exc  # maybe committed: never repeat
                    raise
                return result

        return await self._retry(attempt)

    async def _lock_user(self, conn: Conn, user_id: str) -> float:
        """Serialize with every other writer of this user's session list; return now."""
        key = lock_key(self._schema, "user", user_id)
        row = await _fetch_one(conn, self._sql.lock, {"lock": key, "now": self._now()})
        assert row is not None
        return float(row[0])

    async def _drop_state(self, conn: Conn, owners: Sequence[TupleRow]) -> None:
        """Delete the session state of ``owners``: ``(session_id, user_id)`` rows."""
        if owners:
            params = {"session_ids": [o[0] for o in owners], "user_ids": [o[1] for o in owners]}
            await conn.execute(self._sql.drop_session_state, params)

    async def _live_of(
        self, conn: Conn, user_id: str, now: float | None
    ) -> tuple[list[SessionRow], float]:
        """The user's live sessions, oldest first, and the time they were judged at."""
        rows = await _fetch_all(conn, self._sql.live_of_user, {"user_id": user_id, "now": now})
        return [_session(r[1:]) for r in rows if r[1] is not None], float(rows[0][0])

    async def _revoke(self, conn: Conn, session_ids: list[str], now: float) -> tuple[str, ...]:
        if not session_ids:
            return ()
        params = {"session_ids": session_ids, "now": now}
        revoked = await _fetch_all(conn, self._sql.revoke_ids, params)
        await self._drop_state(conn, revoked)
        done = {r[0] for r in revoked}
        return tuple(s for s in session_ids if s in done)

    # sessions

    async def create_session(
        self, new: NewSessionRow, *, max_sessions: int, evict_oldest: bool
    ) -> Created:
        async def work(conn: Conn) -> Created:
            now = await self._lock_user(conn, new.user_id)
            existing = await _fetch_one(conn, self._sql.get_session, asdict(new))
            if existing is not None:
                if _session(existing).token_hash != new.token_hash:
                    raise ConfigurationError("session id collision")
                return Created(_session(existing), ())
            live, _ = await self._live_of(conn, new.user_id, now)
            excess = len(live) - max_sessions + 1
            if excess > 0 and not evict_oldest:
                return Created(None, ())
            evicted = await self._revoke(conn, [r.session_id for r in live[: max(excess, 0)]], now)
            row = await _fetch_one(
                conn, self._sql.insert_session, asdict(stamp_new_session(new, now))
            )
            assert row is not None
            return Created(_session(row), evicted)

        # Repeatable: a retry after a commit finds the session by its id and returns it.
        return await self._transaction(work)

    async def find_session(self, key: SessionKey, *, touch_interval: float | None) -> Lookup:
        params = {**key_params(key), "now": self._now(), "touch": touch_interval}
        return _lookup(await self._one(self._sql.find(key), params))

    async def rotate_session(self, key: SessionKey, new_token_hash: str) -> Lookup:
        params = {**key_params(key), "now": self._now(), "new_token_hash": new_token_hash}

        # In a transaction, not autocommit, so that a connection found dead before COMMIT
        # (after a server restart) is retried rather than reported as a maybe-rotation.
        async def work(conn: Conn) -> Lookup:
            return _lookup(await _fetch_one(conn, self._sql.rotate(key), params))

        return await self._transaction(work, idempotent=False)

    async def revoke_session(self, key: ById) -> bool:
        async def work(conn: Conn) -> bool:
            params = {**key_params(key), "now": self._now()}
            revoked = await _fetch_all(conn, self._sql.revoke_one, params)
            await self._drop_state(conn, revoked)
            return bool(revoked)

        return await self._transaction(work)

    async def revoke_user_sessions(self, user_id: str, *, keep: str | None = None) -> int:
        async def work(conn: Conn) -> int:
            now = await self._lock_user(conn, user_id)
            live, _ = await self._live_of(conn, user_id, now)
            doomed = [r.session_id for r in live if r.session_id != keep]
            return len(await self._revoke(conn, doomed, now))

        return await self._transaction(work)

    async def list_sessions(self, user_id: str) -> tuple[list[SessionRow], float]:
        async def op() -> tuple[list[SessionRow], float]:
            async with self._live_pool().connection() as conn:
                return await self._live_of(conn, user_id, self._now())

        return await self._retry(op)

    async def sweep_sessions(self, limit: int) -> int:
        if limit <= 0:
            return 0

        async def work(conn: Conn) -> int:
            swept = await _fetch_all(conn, self._sql.sweep, {"now": self._now(), "limit": limit})
            await self._drop_state(conn, swept)
            return len(swept)

        return await self._transaction(work)

    # state

    async def get_state(self, scope: StateScope, name: str) -> StateRow | None:
        params = {**state_params(scope, name), "now": self._now()}
        row = await self._one(self._sql.get_state, params)
        return None if row is None else StateRow(row[0], row[1])

    async def put_state(
        self, scope: StateScope, name: str, data: str, *, expected_version: int | None
    ) -> StateWrite:
        params = {**state_params(scope, name), "data": data, "now": self._now()}

        async def work(conn: Conn) -> StateWrite:
            return await self._write_state(conn, scope, params, expected_version)

        return await self._transaction(work, idempotent=False)

    async def _write_state(
        self, conn: Conn, scope: StateScope, params: Params, expected: int | None
    ) -> StateWrite:
        live = await self._owner_live(conn, scope, params)
        current = await self._locked_version(conn, params)
        if live and current is None and expected in (None, 0):
            if await _fetch_one(conn, self._sql.create_state, params) is not None:
                return StateWrite(True, 1)
            current = await self._locked_version(conn, params)  # a rival's, locked by us now
        if not live:
            return StateWrite(False, current, owner_live=False)
        if not version_matches(current, expected):
            return StateWrite(False, current)
        row = await _fetch_one(conn, self._sql.update_state, params)
        assert row is not None  # the row is locked by this transaction
        return StateWrite(True, int(row[0]))

    async def _owner_live(self, conn: Conn, scope: StateScope, params: Params) -> bool:
        if scope.kind == "user":
            return True
        row = await _fetch_one(conn, self._sql.owner_live, params)
        return row is not None and bool(row[0])

    async def _locked_version(self, conn: Conn, params: Params) -> int | None:
        row = await _fetch_one(conn, self._sql.lock_state, params)
        return None if row is None else int(row[0])

    async def delete_state(
        self, scope: StateScope, name: str, *, expected_version: int | None
    ) -> StateWrite:
        params = {**state_params(scope, name), "now": self._now()}

        async def work(conn: Conn) -> StateWrite:
            live = await self._owner_live(conn, scope, params)
            current = await self._locked_version(conn, params)
            if not live:
                return StateWrite(False, current, owner_live=False)
            if current is None or not version_matches(current, expected_version):
                return StateWrite(False, current)
            await conn.execute(self._sql.delete_state, params)
            return StateWrite(True, None)

        return await self._transaction(work, idempotent=expected_version is None)

    async def list_state(self, scope: StateScope) -> list[str]:
        params = {**state_params(scope, ""), "now": self._now()}
        rows = await self._all(self._sql.state_names, params)
        return [str(r[0]) for r in rows]


async def _fetch_one(conn: Conn, query: Query, params: Params) -> TupleRow | None:
    cur = await conn.execute(query, params)
    return await cur.fetchone()


async def _fetch_all(conn: Conn, query: Query, params: Params) -> list[TupleRow]:
    cur = await conn.execute(query, params)
    return await cur.fetchall()


def _session(row: Sequence[Any]) -> SessionRow:
    return SessionRow(*row)


def _lookup(row: TupleRow | None) -> Lookup:
    assert row is not None  # the statement always returns the clock's row
    found = None if row[1] is None else _session(row[1:])
    return Lookup(found, float(row[0]))
