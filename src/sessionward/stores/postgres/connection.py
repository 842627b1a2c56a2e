"""The PostgreSQL store's plumbing: pool, lifecycle, and the retry rules of every call.

:class:`PostgresCore` is the base of :class:`~.store.PostgresStore`; the capabilities are
layered on it (one module per capability: :mod:`.sessions`, :mod:`.state`, :mod:`.users`,
:mod:`.limits`, :mod:`.budgets`, :mod:`.jobs`), all sharing one pool and one set of composed
statements.
"""

from __future__ import annotations

import select
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import psycopg
from psycopg import AsyncConnection, pq, sql
from psycopg.conninfo import make_conninfo
from psycopg.errors import TransactionRollback
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ...clock import Clock
from ...errors import ConfigurationError, SessionwardError, StorageError
from ...urls import PostgresOptions, StoreURL
from ..records import PoolStats
from ..retry import Retrier
from .schema import migrate
from .statements import Params, compose

T = TypeVar("T")
Conn = AsyncConnection[TupleRow]
Query = sql.SQL | sql.Composed


def is_transient(exc: BaseException) -> bool:
    """Connection-level failures, and transactions the server rolled back (deadlock,
    serialization failure): all are subclasses of ``OperationalError``. Not a
    ``PoolTimeout``: that wait already took the whole ``pool_timeout``, and repeating it is
    what would stretch a request across an outage."""
    return isinstance(exc, psycopg.OperationalError) and not isinstance(exc, PoolTimeout)


def is_unavailable(exc: BaseException) -> bool:
    """No connection within ``pool_timeout``: the store is unavailable (503), not retried."""
    return isinstance(exc, PoolTimeout)


async def check_connection(conn: Conn) -> None:
    """The pool's check at checkout: a connection the server has closed (a restart) is
    discarded instead of failing the caller's statement. No round trip."""
    if closed_by_server(conn):
        raise psycopg.OperationalError("the server closed this pooled connection")


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


class PostgresCore:
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
        self._retry = Retrier("postgresql", is_transient, unavailable=is_unavailable)
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
        """The pool. ``reconnect_timeout`` = ``pool_timeout``: while the server is down a
        reconnect chain gives up within the same bound, and the next caller starts a fresh
        attempt, so the pool is whole again as soon as the server answers (psycopg_pool's
        own backoff would make it wait for its next tick, seconds after the server is back;
        docs/reliability.md)."""
        o = self._options
        return AsyncConnectionPool(
            conninfo(o),
            kwargs={"autocommit": True},
            min_size=o.pool_min,
            max_size=o.pool_max,
            timeout=o.pool_timeout,
            check=check_connection,
            reconnect_timeout=o.pool_timeout,
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
            wait_time=stats.get("requests_wait_ms", 0) / 1000,
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
        """One autocommit statement. Not ``idempotent``: repeated only when the server says
        it rolled back (a deadlock or serialization failure) or no connection was had (none
        from the pool, or one the server had closed before anything was sent), never after
        a lost connection, which may have come after the statement committed."""

        async def op() -> TupleRow | None:
            async with self._live_pool().connection() as conn:
                if not idempotent and closed_by_server(conn):
                    raise psycopg.OperationalError("the server closed this pooled connection")
                try:
                    return await fetch_one(conn, query, params)
                except psycopg.OperationalError as exc:
                    if not idempotent and not isinstance(exc, TransactionRollback):
                        raise self._retry.wrap(exc) from exc  # maybe committed: never repeat
                    raise

        return await self._retry(op)

    async def _all(self, query: Query, params: Params) -> list[TupleRow]:
        async def op() -> list[TupleRow]:
            async with self._live_pool().connection() as conn:
                return await fetch_all(conn, query, params)

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


def closed_by_server(conn: Conn) -> bool:
    """Whether the server has closed this idle connection (a restart, a terminated backend):
    its goodbye is then waiting on the socket. A zero-timeout poll, no round trip; a
    connection lost without a goodbye is not seen, and fails as it is used."""
    pgconn = conn.pgconn
    try:
        for _ in range(2):  # what has arrived (the server's goodbye), then the EOF behind it
            if not _readable(pgconn.socket):
                break
            pgconn.consume_input()  # nonblocking: takes only what has arrived
    except (OSError, psycopg.OperationalError):
        return True
    return pgconn.status != pq.ConnStatus.OK


def _readable(fd: int) -> bool:
    if hasattr(select, "poll"):  # select() refuses descriptors past 1023
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])


async def fetch_one(conn: Conn, query: Query, params: Params) -> TupleRow | None:
    cur = await conn.execute(query, params)
    return await cur.fetchone()


async def fetch_all(conn: Conn, query: Query, params: Params) -> list[TupleRow]:
    cur = await conn.execute(query, params)
    return await cur.fetchall()
