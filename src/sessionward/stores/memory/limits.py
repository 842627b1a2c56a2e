"""The memory store's GCRA limits (a mixin of :class:`~.store.MemoryStore`).

Limit keys share the store's LRU cap with sessions and state, so a flood of distinct keys
cannot grow the store past ``max_entries``; a key whose TAT has passed is the same as an
absent one and costs nothing until the LRU drops it.

GCRA decisions never wait, so they are synchronous underneath: ``gcra_now`` (``gcra`` is
its async face), and for the rate limiter ``gcra_keys_now`` and ``gcra_one_now`` (one key:
its commonest call), which take bare keys and parameters rather than check objects.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TypeVar

from ...rules.limits import gcra_candidate
from ..records import GcraCheck, GcraResult

T = TypeVar("T")


class MemoryLimits:
    """GCRA limits, under the store's one lock (``_locked``)."""

    # MemoryStore's: the lock, the clock's now(), the LRU and its cap, the fork mark
    _lock: threading.Lock
    _now: Callable[[], float]
    _lru: OrderedDict[str | tuple[str, ...], None]
    _max_entries: int
    _inherited: bool

    def _locked(self, fn: Callable[[float], T]) -> T:
        raise NotImplementedError  # MemoryStore's: one lock, one process

    def _refuse_inherited(self) -> None:
        raise NotImplementedError  # MemoryStore's: used after a fork

    def _evict(self) -> None:
        raise NotImplementedError  # MemoryStore's LRU: drop the oldest past the cap

    def _forget_entry(self, entry: str | tuple[str, ...]) -> None:
        raise NotImplementedError  # MemoryStore's LRU

    def __init__(self) -> None:
        self._limits: dict[str, float] = {}

    async def gcra(self, checks: Sequence[GcraCheck], *, apply: bool = True) -> GcraResult:
        return self.gcra_now(checks, apply=apply)

    def gcra_now(self, checks: Sequence[GcraCheck], *, apply: bool = True) -> GcraResult:
        """:meth:`gcra`, synchronously: it never waits (one lock, no I/O)."""

        def op(now: float) -> GcraResult:
            decided = [gcra_candidate(c, self._limits.get(c.key), now) for c in checks]
            allowed = tuple(ok for ok, _ in decided)
            tats = tuple(tat for _, tat in decided)
            if apply and all(allowed):
                for check, tat in zip(checks, tats, strict=True):
                    self._store_tat(check.key, tat)
            return GcraResult(allowed, tats, now)

        return self._locked(op)

    def gcra_one_now(
        self, key: str, period: float, capacity: float, cost: float, apply: bool = True
    ) -> tuple[bool, float, float]:
        """:meth:`gcra_now` of the one check ``GcraCheck(key, period, capacity, cost)``, as
        ``(allowed, candidate TAT, now)``: the same rule (``gcra_candidate``) written out, as
        the rate limiter's hot path, with nothing to build but the answer."""
        if self._inherited:
            self._refuse_inherited()
        with self._lock:
            now = self._now()
            limits = self._limits
            tat = limits.get(key)
            base = now if tat is None or now > tat else tat  # max(tat or now, now)
            candidate = base + cost * period
            if now > candidate:  # max(candidate, now)
                candidate = now
            allowed = cost < 0 or candidate - now <= capacity
            if allowed and apply:
                limits[key] = candidate
                if tat is None:  # a new key: the LRU's newest, and the cap may drop the oldest
                    self._lru[key] = None
                    self._evict()
                else:  # every kept key is in the LRU
                    self._lru.move_to_end(key)
            return allowed, candidate, now

    def gcra_keys_now(
        self,
        keys: Sequence[str],
        params: Sequence[tuple[float, float]],
        cost: float,
        apply: bool = True,
    ) -> tuple[tuple[bool, ...], tuple[float, ...], float]:
        """:meth:`gcra_now` of ``GcraCheck(key, period, capacity, cost)`` for each key and
        ``(period, capacity)``, as ``(allowed, candidate TATs, now)``."""
        if self._inherited:
            self._refuse_inherited()
        with self._lock:
            now = self._now()
            get = self._limits.get
            allowed = []
            tats = []
            for key, (period, capacity) in zip(keys, params, strict=True):
                tat = get(key)
                base = now if tat is None or now > tat else tat  # max(tat or now, now)
                candidate = base + cost * period
                if now > candidate:  # max(candidate, now)
                    candidate = now
                allowed.append(cost < 0 or candidate - now <= capacity)
                tats.append(candidate)
            if apply and all(allowed):
                for key, tat in zip(keys, tats, strict=True):
                    self._store_tat(key, tat)
            return tuple(allowed), tuple(tats), now

    def _store_tat(self, key: str, tat: float) -> None:
        # a limiter key is its own LRU entry; every key of _limits is in the LRU
        if self._limits.get(key) is None:
            self._limits[key] = tat
            self._lru[key] = None
            self._evict()
        else:
            self._limits[key] = tat
            self._lru.move_to_end(key)

    async def reset_limits(self, keys: Sequence[str]) -> None:
        def op(now: float) -> None:
            for key in keys:
                self._limits.pop(key, None)
                self._forget_entry(key)

        self._locked(op)

    async def sweep_limits(self, limit: int) -> int:
        def op(now: float) -> int:
            done = [key for key, tat in self._limits.items() if tat <= now][:limit]
            for key in done:
                del self._limits[key]
                self._forget_entry(key)
            return len(done)

        return self._locked(op)
