"""The Redis store's connection: pool, scripts, retries and lifecycle (its base class).

redis-py's own retries are switched off: a script re-sent after a dropped connection may
apply twice. The :class:`~.retry.Retrier` repeats only what is safe to repeat.

Rate-limit decisions, one per request, take a shorter way than redis-py's command path: a
:class:`Lease` on one connection of the pool (see there).

On Redis Cluster (``redis+cluster://``) the client is redis-py's ``RedisCluster``, which
routes each command by its keys' slot (one slot per script: see :mod:`.keys`). Scripts are
sent as ``EVALSHA`` and, on ``NOSCRIPT``, as ``EVAL`` (the source once, which also caches it
on that node): redis-py 7.4's ``register_script`` reloads scripts only on the primaries it
knew before a failover and keeps failing on a promoted replica (redis-py#2433). With
``wait_replicas`` > 0 a write script is followed by ``WAIT`` on the same connection, and it
is acknowledged only once that many replicas have it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from functools import cache
from importlib import resources
from typing import Any, TypeVar

from redis import exceptions as redis_errors  # through the package: a missing driver fails here
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import (
    BlockingConnectionPool,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.credentials import UsernamePasswordCredentialProvider

from ...clock import Clock
from ...errors import StorageUnavailable
from ...urls import RedisOptions, StoreURL
from ..retry import Retrier
from .keys import KeyLayout, time_arg

T = TypeVar("T")

# One Lua file per atomic operation (lua/<name>.lua), each run with lua/prelude.lua in front
# of it (but the lean ones), and the budgets' with lua/budget_prelude.lua after that.
BUDGET_SCRIPTS = (
    *("budget_spend", "budget_refund", "budget_capture", "budget_release"),
    *("budget_get", "budget_set", "user_budget", "ledger_list", "ledger_verify", "holds_sweep"),
)
# The job queues' scripts run with lua/job_prelude.lua after lua/prelude.lua.
JOB_SCRIPTS = tuple(
    f"job_{op}" for op in ("submit", "claim", "heartbeat", "progress", "finish", "cancel",
                           "list", "reap", "release", "purge", "counts")
)  # fmt: skip
#: lua/job_gate.lua (sharded job queues' global slots) runs with lua/prelude.lua only.
SESSION_SCRIPTS = tuple(
    f"session_{op}"
    for op in ("create", "find", "rotate", "refresh", "revoke", "revoke_all", "list", "sweep")
)
SCRIPTS = (
    *SESSION_SCRIPTS,
    *("state_get", "state_list", "state_put", "state_delete"),
    *("user_create", "user_claim", "user_list", "user_update", "limits_gcra"),
    *BUDGET_SCRIPTS,
    *JOB_SCRIPTS,
    "job_gate",
    *("capacity_publish", "capacity_instances"),
)
#: Scripts that only read: never followed by WAIT. ``limits_gcra`` is not waited on either:
#: a decision a failover loses lets at most a burst's worth more through, once.
UNWAITED = (
    *("session_find", "session_list", "state_get", "state_list", "user_list", "budget_get"),
    *("ledger_list", "ledger_verify", "job_list", "job_counts", "limits_gcra"),
    *("capacity_publish", "capacity_instances"),  # a sample a failover loses is sent again
)
#: Errors that prove a command did not run (sent again after the slot map is reloaded).
NOT_RUN = (
    redis_errors.MovedError,
    redis_errors.AskError,
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,
)
PRELUDES = ("prelude.lua", "budget_prelude.lua", "job_prelude.lua")
#: Scripts that carry no prelude: run once per request, they would run all of it each time.
LEAN_SCRIPTS = ("limits_gcra",)


@cache
def script_source(name: str) -> str:
    lua = resources.files(__package__) / "lua"
    if name in LEAN_SCRIPTS:
        return (lua / f"{name}.lua").read_text("utf-8")
    parts = PRELUDES[:2] if name in BUDGET_SCRIPTS else PRELUDES[:1]
    if name in JOB_SCRIPTS:
        parts = (PRELUDES[0], PRELUDES[2])
    return "\n".join((lua / part).read_text("utf-8") for part in (*parts, f"{name}.lua"))


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the server or the pool could not be reached. Bad credentials are
    connection errors to redis-py, but retrying them cannot help; nor can a timeout, which
    already took the whole ``socket_timeout`` (see :func:`is_unavailable`)."""
    if isinstance(exc, redis_errors.AuthenticationError | redis_errors.AuthorizationError):
        return False
    if isinstance(exc, (*NOT_RUN, redis_errors.SlotNotCoveredError, redis_errors.ReadOnlyError)):
        return True  # a cluster between slot maps (a failover): the command did not run
    if is_unavailable(exc):
        return False
    return isinstance(exc, redis_errors.ConnectionError | OSError)


def is_unavailable(exc: BaseException) -> bool:
    """A reply that did not come within ``socket_timeout`` (or a connect past
    ``connect_timeout``): the store is unavailable (503) at once, never retried, so a slow
    store costs a request one timeout, not several."""
    return isinstance(exc, redis_errors.TimeoutError | TimeoutError)


def cluster_client(o: RedisOptions) -> Any:
    """redis-py's ``RedisCluster`` on the URL's startup nodes (no I/O until first used); its
    own retries are off, as for a single server (a MOVED or ASK is still followed)."""
    kwargs = connection_kwargs(o)
    for name in ("db", "connection_class", "host", "port"):
        kwargs.pop(name, None)
    if o.ssl:
        kwargs["ssl"] = True
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in o.nodes],
        max_connections=o.max_connections,
        **kwargs,
    )


def connection_kwargs(o: RedisOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "db": o.db,
        "socket_timeout": o.socket_timeout,
        "socket_connect_timeout": o.connect_timeout,
        "decode_responses": True,
        "protocol": 2,  # the same replies on redis-py 5, 7 and 8, and on any server
        "retry": Retry(NoBackoff(), 0),
    }
    if o.password is not None:
        # inside a provider, the password stays out of the pool's connection_kwargs and reprs
        secret = o.password.get_secret_value()
        kwargs["credential_provider"] = UsernamePasswordCredentialProvider(o.username, secret)
    elif o.username is not None:
        kwargs["username"] = o.username
    if o.unix_socket_path is not None:
        socket = {"path": o.unix_socket_path, "connection_class": UnixDomainSocketConnection}
        return {**kwargs, **socket}
    address = {"host": o.host, "port": o.port}
    if not o.ssl:
        return {**kwargs, **address, "connection_class": Connection}
    tls = {"ssl_ca_certs": o.ssl_ca_certs, "ssl_cert_reqs": o.ssl_cert_reqs}
    return {**kwargs, **address, **tls, "connection_class": SSLConnection}


# redis-py before 5.3 wants a command name for a connection; later versions warn when given one
_GET_ARGS = (
    ("PING",)
    if inspect.signature(BlockingConnectionPool.get_connection).parameters["command_name"].default
    is inspect.Parameter.empty
    else ()
)


class CountingPool(BlockingConnectionPool):
    """Counts the callers waiting for a connection, which redis-py does not expose, and takes
    back the connection its :class:`Lease` keeps when a caller would otherwise wait."""

    waiting = 0
    wait_time = 0.0  # seconds callers spent in get_connection, for pool_stats
    lease: Lease | None = None

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        get: Callable[..., Awaitable[Any]] = super().get_connection  # typed or not per version
        self.waiting += 1
        started = time.perf_counter()
        try:
            if self.lease is not None and self.exhausted():
                await self.lease.reclaim()
            return await get(*args, **kwargs)
        finally:
            self.waiting -= 1
            self.wait_time += time.perf_counter() - started

    def exhausted(self) -> bool:
        """Whether a caller would have to wait for a connection now (if redis-py cannot say,
        yes: a lease then gives its connection back more often than it needs to)."""
        can_get: Callable[[], Any] | None = getattr(self, "can_get_connection", None)
        return can_get is None or not can_get()


def pack_command(*args: str) -> bytes:
    """One command in the Redis protocol (what redis-py's ``pack_command`` makes of strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(parts)


def write_packed(writer: asyncio.StreamWriter, packed: bytes) -> bool:
    """Write a packed command; whether the socket left some of it to drain."""
    writer.write(packed)
    return bool(writer.transport.get_write_buffer_size())


def _streams(conn: Any) -> tuple[Any, Any, Any] | None:
    """A connected connection's reader, writer and reply parser, or ``None`` (a redis-py that
    names them otherwise: then the lease takes redis-py's public way)."""
    reader, writer, parser = (
        getattr(conn, name, None) for name in ("_reader", "_writer", "_parser")
    )
    return None if reader is None or writer is None or parser is None else (reader, writer, parser)


class Lease:
    """One connection of the pool, kept between the calls of one caller (the GCRA decisions).

    A call through redis-py's client takes a connection from the bounded pool (a lock, and a
    poll of the socket to check its health: 25-35 µs here) and gives it back, writes through
    ``asyncio.wait_for`` when a socket timeout is set (a task per command on Python 3.11:
    about 30 µs), and reads under a timer of its own (3-6 µs), where the whole round trip of
    a decision takes 100-200 µs. Kept, the connection is checked for a close by the server
    (without a poll), written to, and its reply read by redis-py's parser; the socket timeout
    is kept by one watchdog timer for all calls, which cuts the connection of a call that
    overran it (the call then raises redis-py's ``TimeoutError``, as it would have).

    The connection still counts against the pool's bound (``pool_stats`` shows it idle while
    no call runs on it). The pool takes it back when a caller would otherwise wait for one: at
    once while no call runs on it, else after that call. Any failure but an error reply drops
    it (closed, given back): it may hold a reply not read.
    """

    def __init__(self, pool: CountingPool, timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._conn: Any = None
        self._streams: tuple[Any, Any, Any] | None = None  # the kept connection's
        self._busy = False
        self._deadline: float | None = None  # of the call running, on the loop's clock
        self._expired = False  # the watchdog cut the running call's connection
        self._watchdog: asyncio.TimerHandle | None = None
        self._watched: asyncio.AbstractEventLoop | None = None
        pool.lease = self

    async def call(self, packed: bytes) -> Any:
        """Send one packed command and return its reply (an error reply raises)."""
        if self._conn is None or not self._in_step():
            await self._take()
        streams = self._streams
        if streams is None:
            return await self._call_slowly(packed)
        _, writer, parser = streams
        self._busy, self._expired = True, False
        if self._timeout is not None:
            self._watch_from(asyncio.get_running_loop())
        try:
            if write_packed(writer, packed):
                async with asyncio.timeout(self._timeout):
                    await writer.drain()
            reply = await parser.read_response()
        except BaseException as exc:
            peer = _peer(self._conn)
            await self._drop()
            if self._expired or isinstance(exc, TimeoutError):
                raise redis_errors.TimeoutError(f"Timeout reading from {peer}") from None
            if isinstance(exc, OSError):
                raise redis_errors.ConnectionError(f"Error reading from {peer}: {exc}") from exc
            raise
        finally:
            self._busy, self._deadline = False, None
        if self._expired:  # the reply came in just as the watchdog cut the connection
            await self._drop()
        elif self._pool.waiting and self._pool.exhausted():
            await self.give_back()
        if isinstance(reply, redis_errors.ResponseError):
            raise reply  # an error reply, read in full: the connection is in step
        return reply

    def _in_step(self) -> bool:
        """Whether the kept connection can take a command: not closed or reset by the server
        since its last reply (else the command would be lost, or its outcome unknown)."""
        if self._streams is None:
            return bool(self._conn.is_connected)
        reader = self._streams[0]
        return not reader.at_eof() and reader.exception() is None

    async def _call_slowly(self, packed: bytes) -> Any:
        conn, self._busy = self._conn, True
        try:
            await conn.send_packed_command(packed, check_health=False)
            return await conn.read_response()  # under the socket timeout
        except redis_errors.ResponseError:
            raise
        except BaseException:
            await self._drop()
            raise
        finally:
            self._busy = False

    def _watch_from(self, loop: asyncio.AbstractEventLoop) -> None:
        """Give the call starting now its deadline, and make sure the watchdog runs."""
        assert self._timeout is not None
        self._deadline = loop.time() + self._timeout
        if self._watchdog is None or self._watched is not loop:
            self._watchdog, self._watched = loop.call_at(self._deadline, self._watch), loop

    def _watch(self) -> None:
        self._watchdog = None
        deadline, loop = self._deadline, self._watched
        if deadline is None or loop is None:
            return  # no call running: the next call starts it again
        if loop.time() < deadline:
            self._watchdog = loop.call_at(deadline, self._watch)
            return
        self._expired = True
        self._cut()

    def _cut(self) -> None:
        """Close the kept connection under a running call: its read wakes up to a close."""
        writer = getattr(self._conn, "_writer", None)
        if writer is not None:
            writer.transport.abort()

    async def _take(self) -> None:
        if self._conn is not None:
            await self._drop()
        conn = await self._pool.get_connection(*_GET_ARGS)  # bounded wait, health check
        self._conn, self._streams = conn, _streams(conn)

    async def _drop(self) -> None:
        conn, self._conn, self._streams = self._conn, None, None
        if conn is None:
            return
        try:
            await conn.disconnect(nowait=True)
        finally:
            await self._pool.release(conn)

    @property
    def kept_idle(self) -> bool:
        """Whether it keeps a connection that no call runs on (the pool may take it back)."""
        return self._conn is not None and not self._busy

    async def reclaim(self) -> None:
        """Give the connection back unless a call is running on it (that call gives it back)."""
        if not self._busy:
            await self.give_back()

    async def give_back(self) -> None:
        conn, self._conn, self._streams = self._conn, None, None
        if conn is not None:
            await self._pool.release(conn)

    async def close(self) -> None:
        """Give the connection back; a call running on it is cut off (it fails, and drops it)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._busy:
            self._cut()
        else:
            await self.give_back()


def _peer(conn: Any) -> str:
    host, port, path = (getattr(conn, name, None) for name in ("host", "port", "path"))
    return str(path) if path else f"{host}:{port}"


class RedisConnection:
    """Pool, client and scripts of one store, and the calls every operation goes through."""

    def __init__(self, url: StoreURL, *, clock: Clock | None = None) -> None:
        assert isinstance(url.options, RedisOptions)
        self.url = url
        self._options = url.options
        self._clock = clock
        self._keys = KeyLayout(url.options.key_prefix, cluster=url.options.cluster)
        self._retry = Retrier("redis", is_transient, unavailable=is_unavailable)
        # No I/O here: redis-py connects on first use.
        self._pool = CountingPool(
            max_connections=url.options.max_connections,
            timeout=url.options.pool_timeout,
            **connection_kwargs(url.options),
        )
        # redis-py's hints differ across the versions we support (5.2 to 8: sync/async
        # unions in 7), so the client is untyped here; real-server tests cover its use.
        self._client: Any = Redis.from_pool(self._pool)
        # on a cluster the pool and its lease stay unused (they open nothing until used)
        self._cluster = url.options.cluster
        if self._cluster:
            self._client = cluster_client(url.options)
        # RedisCluster refuses a call past max_connections on a node (no waiting): calls wait
        # here instead, up to pool_timeout, so no node ever sees more
        self._calls = asyncio.Semaphore(url.options.max_connections)
        self._lease = Lease(self._pool, url.options.socket_timeout)
        self._scripts = {
            name: self._client.register_script(script_source(name)) for name in SCRIPTS
        }

    # plumbing

    async def _call(self, op: Callable[[], Awaitable[T]], *, idempotent: bool = True) -> T:
        if self._cluster:
            return await self._retry(lambda: self._bounded(op), idempotent=idempotent)
        return await self._retry(op, idempotent=idempotent)

    async def _bounded(self, op: Callable[[], Awaitable[T]]) -> T:
        try:
            async with asyncio.timeout(self._options.pool_timeout):
                await self._calls.acquire()
        except TimeoutError:
            raise redis_errors.ConnectionError(
                f"no connection free within pool_timeout={self._options.pool_timeout} s"
            ) from None
        try:
            return await op()
        finally:
            self._calls.release()

    async def _script(
        self, name: str, keys: list[str], args: list[str], *, idempotent: bool = True
    ) -> Any:
        if self._options.wait_replicas and name not in UNWAITED:
            return await self._call(lambda: self._waited(name, keys, args), idempotent=idempotent)
        if self._cluster:
            return await self._call(lambda: self._evalsha(name, keys, args), idempotent=idempotent)
        script = self._scripts[name]  # EVALSHA, and SCRIPT LOAD on NOSCRIPT
        return await self._call(lambda: script(keys=keys, args=args), idempotent=idempotent)

    async def _evalsha(self, name: str, keys: list[str], args: list[str]) -> Any:
        """EVALSHA, and EVAL on NOSCRIPT (nothing ran): the cluster's way (see the module)."""
        sha, n = self._scripts[name].sha, len(keys)
        try:
            return await self._client.execute_command("EVALSHA", sha, n, *keys, *args)
        except redis_errors.NoScriptError:
            return await self._client.execute_command("EVAL", script_source(name), n, *keys, *args)

    async def _waited(self, name: str, keys: list[str], args: list[str]) -> Any:
        """The script, then ``WAIT`` on the same connection: its reply once ``wait_replicas``
        replicas have the write, else :class:`StorageUnavailable` (the write ran on the
        primary, and may or may not survive its failover)."""
        want, ms = self._options.wait_replicas, max(1, int(self._options.wait_timeout * 1000))
        body: tuple[Any, ...] = ("EVALSHA", self._scripts[name].sha)
        for _ in range(3):
            target: dict[str, Any] = {}
            if self._cluster:
                await self._client.initialize()
                target = {"target_nodes": self._client.get_node_from_key(keys[0])}
            pipe = self._client.pipeline(transaction=False)
            pipe.execute_command(*body, len(keys), *keys, *args)
            pipe.execute_command("WAIT", want, ms, **target)
            extra = {"allow_redirections": False} if self._cluster else {}
            reply, acked = await pipe.execute(raise_on_error=False, **extra)
            if isinstance(reply, redis_errors.NoScriptError):
                body = ("EVAL", script_source(name))
                continue
            if isinstance(reply, NOT_RUN) and self._cluster:
                self._client._initialize = True  # reload the slot map before sending again
                continue
            if isinstance(reply, Exception):
                raise reply
            if isinstance(acked, Exception):
                raise acked
            if int(acked) < want:
                raise StorageUnavailable(
                    f"redis: {int(acked)} of {want} replicas confirmed the write within "
                    f"{ms} ms; it may not survive a failover"
                )
            return reply
        raise StorageUnavailable(f"redis: {name} found no node serving its slot")

    async def _waited_pipeline(self, keys: list[str], build: Callable[[Any], None]) -> list[Any]:
        """A pipeline of plain writes on ``keys`` (``build`` queues them), then, with
        ``wait_replicas``, one ``WAIT`` per node they went to: their replies, once that many
        replicas have them, else :class:`StorageUnavailable`. On a cluster no redirect is
        followed then (a MOVED raises, and the caller's retry sends all of it again), since
        a redirected write would not be the one its node's WAIT counts."""
        pipe = self._client.pipeline(transaction=False)
        build(pipe)
        want, ms = self._options.wait_replicas, max(1, int(self._options.wait_timeout * 1000))
        if not want:
            replies: list[Any] = await pipe.execute()
            return replies
        if self._cluster:
            await self._client.initialize()
            nodes = {n.name: n for n in map(self._client.get_node_from_key, keys)}
            for node in nodes.values():
                pipe.execute_command("WAIT", want, ms, target_nodes=node)
            replies = await pipe.execute(allow_redirections=False)
            waits = len(nodes)
        else:
            pipe.execute_command("WAIT", want, ms)
            replies, waits = await pipe.execute(), 1
        acked = min(int(reply) for reply in replies[-waits:])
        if acked < want:
            raise StorageUnavailable(
                f"redis: {acked} of {want} replicas confirmed the write within {ms} ms; "
                "it may not survive a failover"
            )
        return replies[:-waits]

    async def _scan_page(self, start: int, pattern: str, count: int) -> tuple[int, list[str]]:
        """One SCAN page. On a cluster the cursor walks the primaries in turn (sorted by
        name): ``node cursor * 64 + node index``."""
        if not self._cluster:
            cursor, keys = await self._call(
                lambda: self._client.scan(start, match=pattern, count=count)
            )
            return int(cursor), [str(key) for key in keys]  # str already: decode_responses

        async def op() -> tuple[int, list[str]]:
            await self._client.initialize()
            nodes = sorted(self._client.get_primaries(), key=lambda node: node.name)
            index, at = start % 64, start // 64
            if index >= len(nodes):
                return 0, []
            args = ("SCAN", at, "MATCH", pattern, "COUNT", count)
            cursor, keys = await self._client.execute_command(*args, target_nodes=nodes[index])
            if isinstance(cursor, dict):  # redis-py 7.4 names the node: ({name: cursor}, keys)
                (cursor,) = cursor.values()
            cursor = int(cursor)
            if cursor == 0:
                index, cursor = index + 1, 0
                if index >= len(nodes):
                    return 0, [str(key) for key in keys]
            return cursor * 64 + index, [str(key) for key in keys]

        return await self._call(op)

    def _now(self) -> str:
        return time_arg(None if self._clock is None else self._clock.now())

    async def _delete_each(self, keys: list[str]) -> None:
        """One DEL per key, in one round trip: the keys may live in different cluster slots."""
        if not keys:
            return

        async def op() -> None:
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.delete(key)
            await pipe.execute()

        await self._call(op)
