"""The Redis store's activity counts and instance samples (a base of
:class:`~.store.RedisStore`).

Sessions live in one hash tag per user, so no key lists them all: every create, touch and
rotation also adds the session to one activity zset by ``last_seen_at`` (``P:{act}:s``). A
count trims the zset, then reads the sessions still in the window (pipelined GETs, a page
at a time) and applies :func:`sessionward.rules.capacity.is_active` to each, so a revoked or
expired session never counts. It runs in the monitor's background sampling, never on a
request. Instance samples are one hash and one expiry zset in the tag ``{inst}``, changed by
one script each.
"""

from __future__ import annotations

import json
from typing import Any

from ...rules.capacity import is_active
from ..records import ActiveCounts, InstanceRow, SessionRow
from .connection import RedisConnection
from .keys import row_from_json

# Members older than this are trimmed by a count, whatever window it asks for.
_ACTIVITY_KEPT = 86400.0
_PAGE = 500


class RedisCapacity(RedisConnection):
    async def _seen(self, row: SessionRow) -> None:
        """Record a session's ``last_seen_at`` in the activity zset (one round trip, with a
        TTL: the zset is never immortal, and a count trims it)."""
        member = self._keys.activity_member(row.user_id, row.session_id)
        key = self._keys.activity()

        async def op() -> None:
            pipe = self._client.pipeline(transaction=False)
            pipe.zadd(key, {member: row.last_seen_at})
            pipe.pexpire(key, int(_ACTIVITY_KEPT * 1000))
            await pipe.execute()

        await self._call(op)

    async def _store_now(self) -> float:
        if self._clock is not None:
            return self._clock.now()
        seconds, micros = await self._call(lambda: self._client.time())
        return float(seconds) + float(micros) / 1_000_000

    async def count_active(self, window: float) -> ActiveCounts:
        now = await self._store_now()
        key = self._keys.activity()

        async def members() -> list[str]:
            pipe = self._client.pipeline(transaction=False)
            pipe.zremrangebyscore(key, "-inf", f"({now - max(window, _ACTIVITY_KEPT)!r}")
            pipe.zrangebyscore(key, repr(now - window), "+inf")
            replies: list[Any] = await pipe.execute()
            return [str(m) for m in replies[1]]

        found = await self._call(members)
        sessions, users = 0, set[str]()
        for start in range(0, len(found), _PAGE):
            for row in await self._rows(found[start : start + _PAGE]):
                if is_active(row, now, window):
                    sessions += 1
                    users.add(row.user_id)
        return ActiveCounts(sessions, len(users), now)

    async def _rows(self, members: list[str]) -> list[SessionRow]:
        keys = [self._keys.session_of_member(m) for m in members]

        async def op() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for k in keys:  # one GET each: the sessions live in many cluster slots
                pipe.get(k)
            replies: list[Any] = await pipe.execute()
            return replies

        return [row_from_json(raw) for raw in await self._call(op) if raw is not None]

    async def publish_instance(self, instance_id: str, data: str, *, ttl: float) -> None:
        json.loads(data)  # a sample is JSON; refuse anything else before it is shared
        args = [self._now(), instance_id, data, repr(float(ttl))]
        await self._script("capacity_publish", self._keys.instances(), args)

    async def list_instances(self) -> list[InstanceRow]:
        flat = await self._script("capacity_instances", self._keys.instances(), [self._now()])
        rows = [
            InstanceRow(str(flat[i]), str(flat[i + 1]), float(flat[i + 2]))
            for i in range(0, len(flat), 3)
        ]
        return sorted(rows, key=lambda row: row.instance_id)
