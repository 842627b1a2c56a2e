"""The PostgreSQL store's activity counts and instance samples (a layer of
:class:`~.store.PostgresStore`).

Each is one autocommit statement on the server's clock (or the injected one).
``count_active`` restates :func:`sessionward.rules.capacity.is_active` in SQL; the capacity
conformance suite keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from ...clock import Clock
from ...urls import StoreURL
from ..records import ActiveCounts, InstanceRow
from .connection import PostgresCore
from .schema import table_names
from .statements import compose_into

_CLOCK = (
    "WITH clock AS MATERIALIZED ("
    "SELECT COALESCE(%(now)s::float8, extract(epoch FROM clock_timestamp())::float8) AS now)"
)
_TEMPLATES = {
    "active": """{clock} SELECT count(s.session_id), count(DISTINCT s.user_id), min(clock.now)
    FROM clock LEFT JOIN {sessions} AS s ON s.revoked_at IS NULL
      AND s.idle_expires_at > clock.now AND s.last_seen_at >= clock.now - %(window)s::float8""",
    "publish": """{clock}, gone AS (
    DELETE FROM {instances} AS i USING clock
    WHERE i.expires_at <= clock.now AND i.instance_id <> %(instance_id)s
)
INSERT INTO {instances} (instance_id, data, expires_at)
SELECT %(instance_id)s, %(data)s, clock.now + %(ttl)s::float8 FROM clock
ON CONFLICT (instance_id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at
RETURNING instance_id""",
    "instances": """{clock} SELECT i.instance_id, i.data, i.expires_at
    FROM {instances} AS i, clock WHERE i.expires_at > clock.now ORDER BY i.instance_id""",
}


@dataclass(frozen=True, slots=True)
class CapacityStatements:
    active: sql.Composed
    publish: sql.Composed
    instances: sql.Composed


class PostgresCapacity(PostgresCore):
    def __init__(self, url: StoreURL, *, clock: Clock | None = None) -> None:
        super().__init__(url, clock=clock)
        names = {**table_names(self._schema), "clock": sql.SQL(_CLOCK)}
        self._capacity = compose_into(CapacityStatements, _TEMPLATES, names)

    async def count_active(self, window: float) -> ActiveCounts:
        row = await self._one(self._capacity.active, {"now": self._now(), "window": window})
        assert row is not None
        return ActiveCounts(int(row[0]), int(row[1]), float(row[2]))

    async def publish_instance(self, instance_id: str, data: str, *, ttl: float) -> None:
        params = {"now": self._now(), "instance_id": instance_id, "data": data, "ttl": ttl}
        await self._one(self._capacity.publish, params)

    async def list_instances(self) -> list[InstanceRow]:
        rows = await self._all(self._capacity.instances, {"now": self._now()})
        return [InstanceRow(str(i), str(d), float(e)) for i, d, e in rows]
