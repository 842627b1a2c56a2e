"""Redis store: one Lua script per atomic step, native TTLs, one hash tag per user.

Every decision runs inside one script on one user's keys (layout in :mod:`.redis_keys`), so
it is atomic against every other client. Validating a token is one round trip once its route
(token hash to user and session) is in the in-process cache: the route never changes, and the
session script checks that the session still carries that token hash.

Times come from the server (``TIME`` inside the scripts) unless a clock is injected; then the
scripts compare stored times with that clock's ``now``, and TTLs are set relative to it, so
with a ``FakeClock`` expiry follows the fake time while Redis only collects the garbage.
Session keys expire at ``idle_expires_at``, so on the server's clock a sweep has nothing left
to delete; on an injected clock it deletes what that clock calls dead, as SQL stores do.

redis-py's own retries are switched off: a script re-sent after a dropped connection may
apply twice. The :class:`~.retry.Retrier` repeats only what is safe to repeat.
"""

from __future__ import annotations

import math
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
from ..errors import ConfigurationError
from ..urls import RedisOptions, StoreURL
from .base import (
    ById,
    ByToken,
    Created,
    Lookup,
    NewSessionRow,
    PoolStats,
    SessionKey,
    SessionRow,
    StateRow,
    StateScope,
    StateWrite,
    touch_due,
)
from .redis_keys import (
    KeyLayout,
    Owner,
    RouteCache,
    encode_id,
    optional,
    parse_route,
    route_value,
    row_from_json,
    session_row,
    state_write,
    time_arg,
    ttl_ms,
    version_arg,
)
from .retry import Retrier

T = TypeVar("T")

# One Lua file per atomic operation, each run with lua/prelude.lua in front of it.
_SESSION_SCRIPTS = ("create", "find", "rotate", "revoke", "revoke_all", "list", "sweep")
_SCRIPTS = (*_SESSION_SCRIPTS, "state_get", "state_list", "state_put", "state_delete")
# A route is written before its session exists, when the session's expiry is not yet known.
_ROUTE_SLACK = 60.0
# A sweep (with an injected clock only) looks at no more than this many SCAN pages.
_SWEEP_PAGES, _SWEEP_PAGE = 1000, 1000


@cache
def _source(name: str) -> str:
    lua = resources.files(__package__) / "lua"
    prelude = (lua / "prelude.lua").read_text("utf-8")
    return prelude + "\n" + (lua / f"{name}.lua").read_text("utf-8")


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the server or the pool could not be reached in time. Bad credentials
    are connection errors to redis-py, but retrying them cannot help."""
    if isinstance(exc, redis_errors.AuthenticationError | redis_errors.AuthorizationError):
        return False
    return isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError | OSError)


def _connection_kwargs(o: RedisOptions) -> dict[str, Any]:
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


class _CountingPool(BlockingConnectionPool):
    """Counts the callers waiting for a connection, which redis-py does not expose."""

    waiting = 0

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        get: Callable[..., Awaitable[Any]] = super().get_connection  # typed or not per version
        self.waiting += 1
        try:
            return await get(*args, **kwargs)
        finally:
            self.waiting -= 1


class RedisStore:
    def __init__(self, url: StoreURL, *, clock: Clock | None = None) -> None:
        assert isinstance(url.options, RedisOptions)
        self.url = url
        self._options = url.options
        self._clock = clock
        self._keys = KeyLayout(url.options.key_prefix)
        self._routes = RouteCache(url.options.route_cache_size)
        self._retry = Retrier("redis", is_transient)
        # No I/O here: redis-py connects on first use.
        self._pool = _CountingPool(
            max_connections=url.options.max_connections,
            timeout=url.options.pool_timeout,
            **_connection_kwargs(url.options),
        )
        self._client = Redis.from_pool(self._pool)
        self._scripts = {name: self._client.register_script(_source(name)) for name in _SCRIPTS}

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
            return await pipe.execute()

        await self._call(load)

    async def aclose(self) -> None:
        self._routes = RouteCache(self._options.route_cache_size)
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

    async def _locate(self, key: SessionKey) -> Owner | Lookup:
        """The session a key names, or (no route) the answer: no such session, at this time."""
        if isinstance(key, ById):
            return key.user_id, key.session_id
        owner = self._routes.get(key.token_hash)
        if owner is not None:
            return owner
        value, now = await self._read_route(key.token_hash)
        owner = parse_route(value)
        if owner is None:
            return Lookup(None, now)
        self._routes.put(key.token_hash, owner)
        return owner

    async def _read_route(self, token_hash: str) -> tuple[str | None, float]:
        route = self._keys.route(token_hash)
        clock = self._clock

        async def op() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            pipe.get(route)
            if clock is None:
                pipe.time()  # rides along, so that an unknown token costs one round trip
            replies: list[Any] = await pipe.execute()
            return replies

        replies = await self._call(op)
        if clock is not None:
            return replies[0], clock.now()
        seconds, micros = replies[1]
        return replies[0], seconds + micros / 1_000_000

    async def _on_session(
        self, name: str, key: SessionKey, extra: list[str], *, idempotent: bool = True
    ) -> tuple[Lookup, list[Any]]:
        """Run a session script on the session ``key`` names; its reply starts ``{now, row}``."""
        owner = await self._locate(key)
        if isinstance(owner, Lookup):
            return owner, []
        user_id, session_id = owner
        token = key.token_hash if isinstance(key, ByToken) else ""
        keys = self._keys.session(user_id, session_id)
        args = [self._now(), user_id, token, *extra]
        reply = await self._script(name, keys, args, idempotent=idempotent)
        if len(reply) == 1 and isinstance(key, ByToken):
            self._routes.forget(key.token_hash)  # gone, or rotated away
        row = None
        if len(reply) > 1:
            row = row_from_json(reply[1]) if isinstance(reply[1], str) else session_row(reply[1])
        return Lookup(row, float(reply[0])), reply

    # sessions

    async def create_session(
        self, new: NewSessionRow, *, max_sessions: int, evict_oldest: bool
    ) -> Created:
        owner = (new.user_id, new.session_id)
        route = self._keys.route(new.token_hash)
        # The route first: once the session exists, its token always finds it.
        ttl = ttl_ms(new.absolute_timeout + _ROUTE_SLACK, 0.0)
        await self._call(lambda: self._client.set(route, route_value(owner), px=ttl))
        keys = self._keys.session(new.user_id, new.session_id)
        args = self._create_args(new, max_sessions, evict_oldest)
        reply = await self._script("create", [keys[0], keys[2]], args)
        if reply[1] in ("refused", "collision"):
            await self._call(lambda: self._client.delete(route))
            if reply[1] == "collision":
                raise ConfigurationError("session id collision")
            return Created(None, ())
        self._routes.put(new.token_hash, owner)
        return Created(session_row(reply[2]), tuple(reply[3]))

    def _create_args(self, new: NewSessionRow, max_sessions: int, evict: bool) -> list[str]:
        return [
            self._now(), self._keys.user(new.user_id), encode_id(new.session_id),
            str(max_sessions), "1" if evict else "0",
            new.session_id, new.user_id, new.token_hash,
            repr(float(new.idle_timeout)), repr(float(new.absolute_timeout)),
            optional(new.ip), optional(new.user_agent), new.metadata,
        ]  # fmt: skip

    async def find_session(self, key: SessionKey, *, touch_interval: float | None) -> Lookup:
        # Validate's hot path: a plain GET, no script. On the server's clock a session key
        # exists exactly until its idle_expires_at (its TTL), so an existing key is live
        # unless revoked, and "now" is taken just inside that verdict. Only when a touch looks
        # due does the touching script run, and it decides again on the server's clock.
        owner = await self._locate(key)
        if isinstance(owner, Lookup):
            return owner
        skey = self._keys.session_key(*owner)
        raw: str | bytes | None = await self._call(lambda: self._client.get(skey))
        row = row_from_json(raw) if raw is not None else None
        if row is None or not _carries(row, owner, key):
            if isinstance(key, ByToken):
                self._routes.forget(key.token_hash)  # gone, or rotated away
            return Lookup(None, self._clock.now() if self._clock else time.time())
        now = self._clock.now() if self._clock else _inside(row.idle_expires_at)
        if not touch_due(row, now, touch_interval):
            return Lookup(row, now)
        lookup, _ = await self._on_session("find", key, [time_arg(touch_interval)])
        return lookup

    async def rotate_session(self, key: SessionKey, new_token_hash: str) -> Lookup:
        lookup, reply = await self._on_session("rotate", key, [new_token_hash], idempotent=False)
        if len(reply) == 3 and lookup.row is not None:
            await self._move_route(reply[2], lookup.row, lookup.now)
        return lookup

    async def _move_route(self, old_hash: str, row: SessionRow, now: float) -> None:
        owner = (row.user_id, row.session_id)
        self._routes.forget(old_hash)
        self._routes.put(row.token_hash, owner)
        new_route, old_route = self._keys.route(row.token_hash), self._keys.route(old_hash)
        ttl = ttl_ms(row.expires_at, now)

        async def op() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            pipe.set(new_route, route_value(owner), px=ttl)
            pipe.delete(old_route)
            replies: list[Any] = await pipe.execute()
            return replies

        # Idempotent, so retried: until it lands, only this process can find the new token.
        await self._call(op)

    async def revoke_session(self, key: ById) -> bool:
        keys = self._keys.session(key.user_id, key.session_id)[:2]
        return bool(await self._script("revoke", keys, [self._now(), key.user_id]) == 1)

    async def revoke_user_sessions(self, user_id: str, *, keep: str | None = None) -> int:
        args = [self._now(), self._keys.user(user_id), optional(keep)]
        return int(await self._script("revoke_all", [self._keys.index(user_id)], args))

    async def list_sessions(self, user_id: str) -> tuple[list[SessionRow], float]:
        args = [self._now(), self._keys.user(user_id)]
        now, rows = await self._script("list", [self._keys.index(user_id)], args)
        return [session_row(row) for row in rows], float(now)

    async def sweep_sessions(self, limit: int) -> int:
        # With the server's clock, Redis deletes each session key (and its state) at its
        # idle_expires_at by itself. An injected clock is not Redis's, so then we sweep.
        if self._clock is None or limit <= 0:
            return 0
        swept, cursor = 0, 0
        for _ in range(_SWEEP_PAGES):
            cursor, indexes = await self._scan_indexes(cursor)
            for index in indexes:
                swept += await self._sweep_index(index, limit - swept)
                if swept >= limit:
                    return swept
            if cursor == 0:
                break
        return swept

    async def _scan_indexes(self, start: int) -> tuple[int, list[str]]:
        pattern = f"{self._keys.prefix}:{{u:*}}:idx"
        cursor, keys = await self._call(
            lambda: self._client.scan(start, match=pattern, count=_SWEEP_PAGE)
        )
        return cursor, [str(key) for key in keys]  # str already: decode_responses

    async def _sweep_index(self, index: str, limit: int) -> int:
        args = [self._now(), index.removesuffix("idx"), str(limit)]
        count, token_hashes = await self._script("sweep", [index], args)
        if token_hashes:
            for token_hash in token_hashes:
                self._routes.forget(token_hash)
            routes = [self._keys.route(token_hash) for token_hash in token_hashes]
            await self._call(lambda: self._delete_each(routes))
        return int(count)

    async def _delete_each(self, keys: list[str]) -> None:
        # one DEL per key: routes live in different cluster slots
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.delete(key)
        await pipe.execute()

    # state

    async def get_state(self, scope: StateScope, name: str) -> StateRow | None:
        args = [self._now(), scope.user_id, name]
        reply = await self._script("state_get", self._keys.documents(scope), args)
        if reply is None or reply[0] is None:
            return None
        return StateRow(reply[0], int(reply[1]))

    async def put_state(
        self, scope: StateScope, name: str, data: str, *, expected_version: int | None
    ) -> StateWrite:
        args = [self._now(), scope.user_id, name, data, version_arg(expected_version)]
        keys = self._keys.documents(scope)
        reply = await self._script("state_put", keys, args, idempotent=False)
        return state_write(reply)

    async def delete_state(
        self, scope: StateScope, name: str, *, expected_version: int | None
    ) -> StateWrite:
        args = [self._now(), scope.user_id, name, version_arg(expected_version)]
        keys = self._keys.documents(scope)
        # an unconditional delete may be repeated; a compare-and-delete may not
        reply = await self._script("state_delete", keys, args, idempotent=expected_version is None)
        return state_write(reply)

    async def list_state(self, scope: StateScope) -> list[str]:
        args = [self._now(), scope.user_id]
        return sorted(await self._script("state_list", self._keys.documents(scope), args))


def _inside(idle_expires_at: float) -> float:
    """The local time, but never at or past a deadline the server's TTL has not reached."""
    return min(time.time(), math.nextafter(idle_expires_at, 0.0))


def _carries(row: SessionRow, owner: Owner, key: SessionKey) -> bool:
    """The row is the session the key names: same owner, and still the presented token."""
    if row.user_id != owner[0]:
        return False
    return not isinstance(key, ByToken) or row.token_hash == key.token_hash
