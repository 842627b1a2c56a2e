"""The Redis store's connection: pool, scripts, retries and lifecycle (its base class).

redis-py's own retries are switched off: a script re-sent after a dropped connection may
apply twice. The :class:`~.retry.Retrier` repeats only what is safe to repeat.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import cache
from importlib import resources
from typing import Any, TypeVar

from redis import exceptions as redis_errors  # through the package: a missing driver fails here
from redis.asyncio import Redis
from redis.asyncio.connection import (
    BlockingConnectionPool,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.credentials import UsernamePasswordCredentialProvider

from ..clock import Clock
from ..urls import RedisOptions, StoreURL
from .base import PoolStats
from .redis_keys import KeyLayout, time_arg
from .retry import Retrier

T = TypeVar("T")

# One Lua file per atomic operation, each run with lua/prelude.lua in front of it, and the
# ledger's with lua/prelude_ledger.lua after that.
LEDGER_SCRIPTS = (
    *("spend", "refund", "capture", "release", "budget_get", "budget_set", "user_budget"),
    *("ledger_list", "ledger_verify", "holds_sweep"),
)
SCRIPTS = (
    *("create", "find", "rotate", "refresh", "revoke", "revoke_all", "list", "sweep"),
    *("state_get", "state_list", "state_put", "state_delete"),
    *("user_create", "user_claim", "user_list", "user_update", "gcra"),
    *LEDGER_SCRIPTS,
)
PRELUDES = ("prelude.lua", "prelude_ledger.lua")


@cache
def script_source(name: str) -> str:
    lua = resources.files(__package__) / "lua"
    parts = PRELUDES if name in LEDGER_SCRIPTS else PRELUDES[:1]
    return "\n".join((lua / part).read_text("utf-8") for part in (*parts, f"{name}.lua"))


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the server or the pool could not be reached in time. Bad credentials
    are connection errors to redis-py, but retrying them cannot help."""
    if isinstance(exc, redis_errors.AuthenticationError | redis_errors.AuthorizationError):
        return False
    return isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError | OSError)


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


class CountingPool(BlockingConnectionPool):
    """Counts the callers waiting for a connection, which redis-py does not expose."""

    waiting = 0

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        get: Callable[..., Awaitable[Any]] = super().get_connection  # typed or not per version
        self.waiting += 1
        try:
            return await get(*args, **kwargs)
        finally:
            self.waiting -= 1


class RedisConnection:
    """Pool, client and scripts of one store, and the calls every operation goes through."""

    def __init__(self, url: StoreURL, *, clock: Clock | None = None) -> None:
        assert isinstance(url.options, RedisOptions)
        self.url = url
        self._options = url.options
        self._clock = clock
        self._keys = KeyLayout(url.options.key_prefix)
        self._retry = Retrier("redis", is_transient)
        # No I/O here: redis-py connects on first use.
        self._pool = CountingPool(
            max_connections=url.options.max_connections,
            timeout=url.options.pool_timeout,
            **connection_kwargs(url.options),
        )
        # redis-py's hints differ across the versions we support (5.2 to 8: sync/async
        # unions in 7), so the client is untyped here; real-server tests cover its use.
        self._client: Any = Redis.from_pool(self._pool)
        self._scripts = {
            name: self._client.register_script(script_source(name)) for name in SCRIPTS
        }

    def __repr__(self) -> str:
        return f"RedisStore({self.url.redacted()!r})"

    @property
    def backend(self) -> str:
        return "redis"

    # lifecycle

    async def open(self) -> None:
        async def load() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for script in self._scripts.values():
                pipe.script_load(script.script)
            loaded: list[Any] = await pipe.execute()
            return loaded

        await self._call(load)

    async def aclose(self) -> None:
        await self._client.aclose()  # from_pool: the client owns the pool and closes it

    async def ping(self) -> float:
        async def op() -> float:
            started = time.perf_counter()
            await self._client.ping()
            return time.perf_counter() - started

        return await self._call(op)

    async def server_version(self) -> str:
        info = await self._call(lambda: self._client.info("server"))
        return str(info["redis_version"])

    def pool_stats(self) -> PoolStats:
        # redis-py has no public pool statistics; read its lists defensively.
        in_use = len(getattr(self._pool, "_in_use_connections", ()))
        idle = len(getattr(self._pool, "_available_connections", ()))
        size = self._options.max_connections
        return PoolStats(in_use=in_use, idle=idle, waiting=self._pool.waiting, max_size=size)

    # plumbing

    async def _call(self, op: Callable[[], Awaitable[T]], *, idempotent: bool = True) -> T:
        return await self._retry(op, idempotent=idempotent)

    async def _script(
        self, name: str, keys: list[str], args: list[str], *, idempotent: bool = True
    ) -> Any:
        script = self._scripts[name]  # EVALSHA, and SCRIPT LOAD on NOSCRIPT
        return await self._call(lambda: script(keys=keys, args=args), idempotent=idempotent)

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
