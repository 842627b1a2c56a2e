"""The GCRA step every rate-limit backend applies (Lua and SQL restate it; see their headers)."""

from __future__ import annotations

from ..stores.records import GcraCheck


def gcra_candidate(check: GcraCheck, tat: float | None, now: float) -> tuple[bool, float]:
    """The GCRA rule every backend applies (Lua and SQL restate it)."""
    candidate = max(max(tat if tat is not None else now, now) + check.cost * check.period, now)
    return check.cost < 0 or candidate - now <= check.capacity, candidate
