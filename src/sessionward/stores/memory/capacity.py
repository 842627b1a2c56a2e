"""The memory store's activity counts and instance samples (a mixin of
:class:`~.store.MemoryStore`), under its lock."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ...rules.capacity import is_active
from ..records import ActiveCounts, InstanceRow, SessionRow

T = TypeVar("T")


class MemoryCapacity:
    """Instance samples by id; the counts walk the sessions."""

    _sessions: dict[str, SessionRow]

    def _locked(self, fn: Callable[[float], T]) -> T:
        raise NotImplementedError  # MemoryStore's: one lock, one process

    def __init__(self) -> None:
        self._instances: dict[str, InstanceRow] = {}

    async def count_active(self, window: float) -> ActiveCounts:
        def op(now: float) -> ActiveCounts:
            active = [r for r in self._sessions.values() if is_active(r, now, window)]
            return ActiveCounts(len(active), len({r.user_id for r in active}), now)

        return self._locked(op)

    async def publish_instance(self, instance_id: str, data: str, *, ttl: float) -> None:
        def op(now: float) -> None:
            self._drop_expired(now)
            self._instances[instance_id] = InstanceRow(instance_id, data, now + ttl)

        self._locked(op)

    async def list_instances(self) -> list[InstanceRow]:
        def op(now: float) -> list[InstanceRow]:
            self._drop_expired(now)
            return [self._instances[key] for key in sorted(self._instances)]

        return self._locked(op)

    def _drop_expired(self, now: float) -> None:
        for key in [k for k, row in self._instances.items() if row.expires_at <= now]:
            del self._instances[key]
