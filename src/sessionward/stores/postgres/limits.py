"""The PostgreSQL store's GCRA limits (a layer of :class:`~.store.PostgresStore`).

A decision over any number of keys is one call of the schema's ``sw_gcra`` function
(migration 2, ``sql/schema.sql``): one round trip, row locks in sorted key order, every
candidate stored only if every check allows; its step is ``rules.limits.gcra_candidate``.
A row whose TAT is not ahead of now means the same as no row; sweeps delete such rows in
bounded batches.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..records import GcraCheck, GcraResult
from .connection import PostgresCore


class PostgresLimits(PostgresCore):
    async def gcra(self, checks: Sequence[GcraCheck], *, apply: bool = True) -> GcraResult:
        params = {
            "keys": [c.key for c in checks],
            "periods": [float(c.period) for c in checks],
            "capacities": [float(c.capacity) for c in checks],
            "costs": [float(c.cost) for c in checks],
            "apply": apply,
            "now": self._now(),
        }
        # A peek writes nothing, so any failure may be retried; a decision is retried only
        # when the server rolled it back (it must never be counted twice).
        row = await self._one(self._sql.gcra, params, idempotent=not apply)
        assert row is not None  # the function returns exactly one row
        allowed, tats, now = row
        return GcraResult(tuple(allowed), tuple(float(t) for t in tats), float(now))

    async def reset_limits(self, keys: Sequence[str]) -> None:
        if keys:
            await self._one(self._sql.reset_limits, {"keys": list(keys)})

    async def sweep_limits(self, limit: int) -> int:
        if limit <= 0:
            return 0
        row = await self._one(self._sql.sweep_limits, {"limit": limit, "now": self._now()})
        assert row is not None
        return int(row[0])
