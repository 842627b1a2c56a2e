"""The Redis store's sessions (a base of :class:`~.store.RedisStore`).

Every session step runs inside one script on one user's keys (layout in :mod:`.keys`), so it
is atomic against every other client. Validating a token is one round trip once its route
(token hash to user and session) is in the in-process cache: the route never changes, and the
session script checks that the session still carries that token hash.

Times come from the server (``TIME`` inside the scripts) unless a clock is injected; then the
scripts compare stored times with that clock's ``now``, and TTLs are set relative to it, so
with a ``FakeClock`` expiry follows the fake time while Redis only collects the garbage.
Session keys expire at ``idle_expires_at``, so on the server's clock a sweep has nothing left
to delete; on an injected clock it deletes what that clock calls dead, as SQL stores do.

A rotation keeps the old hash's route and adds it to the session's spent set, so that a
refresh presenting it is still led to the session and can tell a replay from a reuse.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ...clock import Clock
from ...errors import ConfigurationError
from ...rules.sessions import touch_due
from ...urls import StoreURL
from ..records import (
    ById,
    ByToken,
    Created,
    Lookup,
    NewSessionRow,
    Refreshed,
    SessionKey,
    SessionRow,
)
from .capacity import RedisCapacity
from .keys import (
    Owner,
    RouteCache,
    encode_id,
    optional,
    parse_route,
    route_value,
    row_from_json,
    session_row,
    time_arg,
    ttl_ms,
)

# A route is written before its session exists, when the session's expiry is not yet known.
_ROUTE_SLACK = 60.0
# A sweep (with an injected clock only) looks at no more than this many SCAN pages.
_SWEEP_PAGES, _SWEEP_PAGE = 1000, 1000


class RedisSessions(RedisCapacity):
    def __init__(self, url: StoreURL, *, clock: Clock | None = None) -> None:
        super().__init__(url, clock=clock)
        self._routes = RouteCache(self._options.route_cache_size)

    # plumbing

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
            if clock is None and self._cluster:  # redis-py refuses pipe.time() on a cluster
                await self._client.initialize()
                node = self._client.get_node_from_key(route)
                pipe.execute_command("TIME", target_nodes=node)
            elif clock is None:
                pipe.time()  # rides along, so that an unknown token costs one round trip
            replies: list[Any] = await pipe.execute()
            return replies

        replies = await self._call(op)
        if clock is not None:
            return replies[0], clock.now()
        seconds, micros = replies[1]
        return replies[0], int(seconds) + int(micros) / 1_000_000

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
            self._routes.forget(key.token_hash)  # gone, or spent
        row = None
        if len(reply) > 1:
            row = row_from_json(reply[1]) if isinstance(reply[1], str) else session_row(reply[1])
        return Lookup(row, float(reply[0])), reply

    # sessions

    async def create_session(
        self, new: NewSessionRow, *, max_sessions: int, evict_oldest: bool
    ) -> Created:
        owner = (new.user_id, new.session_id)
        route, value = self._keys.route(new.token_hash), route_value(owner)
        # The route first: once the session exists, its token always finds it. NX, because a
        # route already there is the session's own (a repeated create, or since spent) and
        # must survive this create's refusal.
        # With it, in the same round trip, the owner of the session id (for a lookup by id).
        ttl = ttl_ms(new.absolute_timeout + _ROUTE_SLACK, 0.0)
        by_id = self._keys.owner(new.session_id)

        def routes(pipe: Any) -> None:
            pipe.set(route, value, px=ttl, nx=True)
            pipe.set(by_id, new.user_id, px=ttl, nx=True)

        wrote = await self._call(lambda: self._waited_pipeline([route, by_id], routes))
        keys = self._keys.session(new.user_id, new.session_id)
        args = self._create_args(new, max_sessions, evict_oldest)
        reply = await self._script("session_create", [keys[0], keys[2]], args)
        if reply[1] in ("refused", "collision"):
            written = [key for key, done in zip((route, by_id), wrote, strict=True) if done]
            if written:
                await self._call(lambda: self._client.delete(*written))
            if reply[1] == "collision":
                raise ConfigurationError("session id collision")
            return Created(None, ())
        self._routes.put(new.token_hash, owner)
        created = session_row(reply[2])
        await self._seen(created)
        return Created(created, tuple(reply[3]))

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
            if isinstance(key, ByToken) and row is None:
                self._routes.forget(key.token_hash)  # gone (a spent hash's route stays true)
            return Lookup(None, self._clock.now() if self._clock else time.time())
        now = self._clock.now() if self._clock else _inside(row.idle_expires_at)
        if not touch_due(row, now, touch_interval):
            return Lookup(row, now)
        lookup, _ = await self._on_session("session_find", key, [time_arg(touch_interval)])
        if lookup.row is not None and lookup.row.last_seen_at > row.last_seen_at:
            await self._seen(lookup.row)
        return lookup

    async def rotate_session(self, key: SessionKey, new_token_hash: str) -> Lookup:
        lookup, reply = await self._on_session(
            "session_rotate", key, [new_token_hash], idempotent=False
        )
        if len(reply) == 3 and lookup.row is not None:
            await self._add_route(lookup.row, lookup.now)
        return lookup

    async def refresh_session(
        self, token_hash: str, new_token_hash: str, *, grace: float
    ) -> Refreshed:
        owner = await self._locate(ByToken(token_hash))
        if isinstance(owner, Lookup):
            return Refreshed("unknown", None, owner.now)
        keys = self._keys.session(*owner)
        args = [self._now(), owner[0], token_hash, new_token_hash, time_arg(grace)]
        # never repeated: a rotation that applied would then look like a replay, or a reuse
        reply = await self._script("session_refresh", keys, args, idempotent=False)
        now = float(reply[0])
        if len(reply) == 2:
            self._routes.forget(token_hash)  # its session is gone, or never carried it
            return Refreshed("unknown", None, now)
        row = session_row(reply[2])
        if reply[1] in ("rotated", "replayed"):
            await self._add_route(row, now)  # a replay re-writes it, in case it was lost
            await self._seen(row)
        return Refreshed(reply[1], row, now)

    async def _add_route(self, row: SessionRow, now: float) -> None:
        """The route of a session's new token. The old token's route stays (it expires at
        ``expires_at`` too), so that a refresh presenting the spent token finds the session."""
        owner = (row.user_id, row.session_id)
        self._routes.put(row.token_hash, owner)
        route, value = self._keys.route(row.token_hash), route_value(owner)
        ttl = ttl_ms(row.expires_at, now)
        # Idempotent, so retried: until it lands, only this process can find the new token.
        await self._call(
            lambda: self._waited_pipeline([route], lambda pipe: pipe.set(route, value, px=ttl))
        )

    async def revoke_session(self, key: ById) -> bool:
        keys = self._keys.session(key.user_id, key.session_id)[:2]
        return bool(await self._script("session_revoke", keys, [self._now(), key.user_id]) == 1)

    async def revoke_user_sessions(self, user_id: str, *, keep: str | None = None) -> int:
        args = [self._now(), self._keys.user(user_id), optional(keep)]
        return int(await self._script("session_revoke_all", [self._keys.index(user_id)], args))

    async def list_sessions(self, user_id: str) -> tuple[list[SessionRow], float]:
        args = [self._now(), self._keys.user(user_id)]
        now, rows = await self._script("session_list", [self._keys.index(user_id)], args)
        return [session_row(row) for row in rows], float(now)

    async def find_session_owner(self, session_id: str) -> str | None:
        # The owner key lives until the session's absolute end (+ slack), so it may name the
        # owner of a session that has ended: the caller's next step (a revoke) finds it dead.
        owner: str | None = await self._call(lambda: self._client.get(self._keys.owner(session_id)))
        return owner

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
        return await self._scan_page(start, pattern, _SWEEP_PAGE)

    async def _sweep_index(self, index: str, limit: int) -> int:
        args = [self._now(), index.removesuffix("idx"), str(limit)]
        count, token_hashes, members = await self._script("session_sweep", [index], args)
        for token_hash in token_hashes:
            self._routes.forget(token_hash)
        routes = [self._keys.route(h) for h in token_hashes]
        await self._delete_each([*routes, *map(self._keys.owner_of_member, members)])
        return int(count)


def _inside(idle_expires_at: float) -> float:
    """The local time, but never at or past a deadline the server's TTL has not reached."""
    return min(time.time(), math.nextafter(idle_expires_at, 0.0))


def _carries(row: SessionRow, owner: Owner, key: SessionKey) -> bool:
    """The row is the session the key names: same owner, and still the presented token."""
    if row.user_id != owner[0]:
        return False
    return not isinstance(key, ByToken) or row.token_hash == key.token_hash
