"""The SQLite store's GCRA limits (a mixin of :class:`~.store.SqliteStore`).

A decision that may store is one ``BEGIN IMMEDIATE`` transaction on the writer, so a GCRA
decision over several keys is atomic against every thread and process; a peek only reads.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...rules.limits import gcra_candidate
from ..records import GcraCheck, GcraResult
from .parts import Conn, SqlitePart


class SqliteLimits(SqlitePart):
    """GCRA limits over the store's reader and writer threads."""

    async def gcra(self, checks: Sequence[GcraCheck], *, apply: bool = True) -> GcraResult:
        def decide(conn: Conn) -> GcraResult:
            now = self._now()
            keys = [c.key for c in checks]
            found = conn.execute(
                f"SELECT key, tat FROM sw_limits WHERE key IN ({', '.join('?' * len(keys))})",
                keys,
            ).fetchall()
            tats = dict(found)
            decided = [gcra_candidate(c, tats.get(c.key), now) for c in checks]
            allowed = tuple(ok for ok, _ in decided)
            candidates = tuple(tat for _, tat in decided)
            if apply and all(allowed):
                conn.executemany(
                    "INSERT INTO sw_limits (key, tat) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET tat = excluded.tat",
                    list(zip(keys, candidates, strict=True)),
                )
            return GcraResult(allowed, candidates, now)

        # A peek only reads; a decision that may store runs on the writer, in one transaction.
        return await (self._write(decide) if apply else self._read(decide))

    async def reset_limits(self, keys: Sequence[str]) -> None:
        def job(conn: Conn) -> None:
            conn.executemany("DELETE FROM sw_limits WHERE key = ?", [(k,) for k in keys])

        await self._write(job)

    async def sweep_limits(self, limit: int) -> int:
        def job(conn: Conn) -> int:
            cursor = conn.execute(
                "DELETE FROM sw_limits WHERE key IN "
                "(SELECT key FROM sw_limits WHERE tat <= ? LIMIT ?)",
                (self._now(), limit),
            )
            return cursor.rowcount

        return await self._write(job)
