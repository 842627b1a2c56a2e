"""Admission control: one decision, :meth:`Admission.admit`, before new work (a login, a
new WebSocket, a job submission) is taken on.

Each threshold is a :class:`Gate` with hysteresis: it trips when its figure reaches the
threshold and lets work in again only once the figure is below ``threshold * (1 -
hysteresis)``, so a load that hovers at the line does not flap between admit and refuse.
Resource figures (CPU, memory, event-loop lag, callers waiting for a store connection) are
the monitor's latest sample; queued jobs and active users are counted in the store at the
moment of the decision, so they are the deployment's. An admin is always admitted, and so
is a login by a user who is already active (for the active-users threshold): admission
protects new work, never the people already in. A store that does not answer within
``capacity_store_timeout`` leaves its figure unknown, which admits (logged): the work
itself then meets the store's own errors.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import anyio

from ..config import Settings
from ..errors import CapacityExceeded, StorageError
from ..rules.capacity import is_active
from ..stores.protocols import Store
from ..stores.records import UserRow
from .sample import Sample

log = logging.getLogger("sessionward.capacity")
T = TypeVar("T")
Kind = Literal["login", "websocket", "job"]
KINDS: tuple[Kind, ...] = ("login", "websocket", "job")
REASONS = ("cpu", "memory", "loop_lag", "pool_waiting", "queued_jobs", "active_users")


@dataclass(frozen=True, slots=True)
class Decision:
    """``reason``: why work was refused (one of :data:`REASONS`), or why it was let in
    (``"ok"``, ``"admin"``)."""

    admitted: bool
    reason: str = "ok"
    retry_after: float = 0.0

    def check(self) -> None:
        """Raise :class:`~sessionward.errors.CapacityExceeded` if refused."""
        if not self.admitted:
            raise CapacityExceeded(
                f"over capacity ({self.reason.replace('_', ' ')})", retry_after=self.retry_after
            )


class Gate:
    """One threshold with hysteresis; a threshold of 0 never trips."""

    def __init__(self, threshold: float, hysteresis: float) -> None:
        self.threshold = threshold
        self.release = threshold * (1 - hysteresis)
        self.tripped = False

    def over(self, value: float | None) -> bool:
        if self.threshold <= 0 or value is None:
            return False
        line = self.release if self.tripped else self.threshold
        self.tripped = value >= line
        return self.tripped


class Admission:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        latest: Callable[[], Sample | None],
        on_decision: Callable[[Kind, Decision], None] | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._latest = latest
        self.on_decision = on_decision
        h = settings.capacity_hysteresis
        self.gates = {
            "cpu": Gate(settings.capacity_max_cpu, h),
            "memory": Gate(settings.capacity_max_memory, h),
            "loop_lag": Gate(settings.capacity_max_loop_lag, h),
            "pool_waiting": Gate(settings.capacity_max_pool_waiting, h),
            "queued_jobs": Gate(settings.capacity_max_queued_jobs, h),
            "active_users": Gate(settings.capacity_max_active_users, h),
        }
        self.admitted = self.refused = 0

    async def admit(self, kind: Kind, user_id: str | None = None) -> Decision:
        """Admit or refuse new work of ``kind`` by ``user_id`` (``None``: not known yet, or
        no such user). Never raises; :meth:`Decision.check` turns a refusal into
        :class:`~sessionward.errors.CapacityExceeded`."""
        decision = await self._decide(kind, user_id)
        if decision.admitted:
            self.admitted += 1
        else:
            self.refused += 1
        if self.on_decision is not None:
            self.on_decision(kind, decision)
        return decision

    async def _decide(self, kind: Kind, user_id: str | None) -> Decision:
        user = await self._bounded(self._store.get_user(user_id)) if user_id else None
        if user is not None and "admin" in user.roles:
            return Decision(True, "admin")
        over = self._over_resources()
        if over:
            return self._refuse(over[0])
        if kind == "job" and self.gates["queued_jobs"].threshold > 0:
            counts = await self._bounded(self._store.job_counts())
            if self.gates["queued_jobs"].over(counts.queued if counts else None):
                return self._refuse("queued_jobs")
        if kind == "login" and await self._over_active_users(user):
            return self._refuse("active_users")
        return Decision(True)

    async def _over_active_users(self, user: UserRow | None) -> bool:
        gate = self.gates["active_users"]
        if gate.threshold <= 0 or await self._is_active(user):
            return False
        window = self._settings.capacity_active_window
        active = await self._bounded(self._store.count_active(window))
        return gate.over(active.users if active else None)

    def _over_resources(self) -> list[str]:
        sample = self._latest()
        if sample is None:
            return []
        figures = {
            "cpu": sample.cpu_used,
            "memory": sample.memory_percent,
            "loop_lag": sample.loop_lag,
            "pool_waiting": float(sample.pool_waiting),
        }
        # every gate sees its figure, so each one's hysteresis follows the load
        return [name for name, value in figures.items() if self.gates[name].over(value)]

    async def _is_active(self, user: UserRow | None) -> bool:
        if user is None:
            return False
        listed = await self._bounded(self._store.list_sessions(user.user_id))
        if listed is None:
            return False
        rows, now = listed
        return any(is_active(r, now, self._settings.capacity_active_window) for r in rows)

    def _refuse(self, reason: str) -> Decision:
        return Decision(False, reason, self._settings.capacity_retry_after)

    async def _bounded(self, call: Awaitable[T]) -> T | None:
        try:
            with anyio.fail_after(self._settings.capacity_store_timeout):
                return await call
        except (TimeoutError, StorageError) as exc:
            log.warning("admission could not read the store, admitting: %s", exc or "timeout")
            return None
