"""The SQLite store's activity counts and instance samples (a mixin of
:class:`~.store.SqliteStore`).

``count_active`` restates :func:`sessionward.rules.capacity.is_active` in SQL; the capacity
conformance suite keeps the two in step.
"""

from __future__ import annotations

from ..records import ActiveCounts, InstanceRow
from .parts import Conn, SqlitePart

_ACTIVE = """SELECT count(*), count(DISTINCT user_id) FROM sw_sessions
WHERE revoked_at IS NULL AND idle_expires_at > :now AND last_seen_at >= :now - :window"""


class SqliteCapacity(SqlitePart):
    """Activity read on a reader; samples in ``sw_instances``, expired rows deleted on write."""

    async def count_active(self, window: float) -> ActiveCounts:
        def job(conn: Conn) -> ActiveCounts:
            now = self._now()
            sessions, users = conn.execute(_ACTIVE, {"now": now, "window": window}).fetchone()
            return ActiveCounts(int(sessions), int(users), now)

        return await self._read(job)

    async def publish_instance(self, instance_id: str, data: str, *, ttl: float) -> None:
        def job(conn: Conn) -> None:
            now = self._now()
            conn.execute("DELETE FROM sw_instances WHERE expires_at <= ?", (now,))
            conn.execute(
                "INSERT INTO sw_instances (instance_id, data, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (instance_id) DO UPDATE SET data = excluded.data, "
                "expires_at = excluded.expires_at",
                (instance_id, data, now + ttl),
            )

        await self._write(job)

    async def list_instances(self) -> list[InstanceRow]:
        def job(conn: Conn) -> list[InstanceRow]:
            rows = conn.execute(
                "SELECT instance_id, data, expires_at FROM sw_instances "
                "WHERE expires_at > ? ORDER BY instance_id",
                (self._now(),),
            ).fetchall()
            return [InstanceRow(str(i), str(d), float(e)) for i, d, e in rows]

        return await self._read(job)
