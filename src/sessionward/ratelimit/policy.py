"""Rate-limit policies and the GCRA arithmetic that turns a store's answer into a decision.

A policy is one or more limits, written as text:

    "10/second"                  10 at once, then one more every 0.1 s
    "100/minute;1000/hour"       both limits, decided together
    "5 per 30 seconds"           N per M units
    "100/minute burst 20"        20 at once, then 100 a minute (one every 0.6 s)

Units: second(s)/sec/s, minute(s)/min/m, hour(s)/h, day(s)/d. Limits are separated by ``;``.
``N/period`` admits a burst of N and then one more every period/N (GCRA: one timestamp per
key, so memory per key is constant whatever the limit). A bad policy is a
:class:`~sessionward.errors.ConfigurationError` that says what is accepted.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field

from ..errors import ConfigurationError
from ..stores.base import GcraCheck

_UNITS = {
    "second": 1.0, "seconds": 1.0, "sec": 1.0, "secs": 1.0, "s": 1.0,
    "minute": 60.0, "minutes": 60.0, "min": 60.0, "mins": 60.0, "m": 60.0,
    "hour": 3600.0, "hours": 3600.0, "h": 3600.0,
    "day": 86400.0, "days": 86400.0, "d": 86400.0,
}  # fmt: skip
_LIMIT = re.compile(
    r"^\s*(?P<count>\d{1,9})\s*(?:/|\s+per\s+)\s*(?P<every>\d{1,9})?\s*(?P<unit>[a-z]+)"
    r"(?:\s+burst\s+(?P<burst>\d{1,9}))?\s*$",
    re.IGNORECASE,
)
SLACK = 0.001
ACCEPTED = (
    'accepted: "N/unit" or "N per [M] units", optionally "burst B", several joined by ";" '
    '(e.g. "10/second;100/minute", "5 per 30 seconds", "100/minute burst 20"); '
    "units: second, minute, hour, day"
)


@dataclass(frozen=True, slots=True)
class Limit:
    """``count`` per ``window`` seconds, at most ``burst`` at once.

    ``interval``: seconds between two admitted units once the burst is spent (GCRA's T).
    ``capacity``: how far ahead of now a key's TAT may run. A sliver of slack keeps float
    rounding (TATs are ~1.7e9, so each step may round by ~2.4e-7 s) from refusing the burst's
    last unit, while one more unit stays almost a whole interval over: at most 1 ms, and
    never more than half an interval. Both are computed once: they are on the hot path."""

    count: int
    window: float
    burst: int
    interval: float = field(init=False, compare=False, repr=False)
    capacity: float = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        interval = self.window / self.count
        object.__setattr__(self, "interval", interval)
        object.__setattr__(self, "capacity", self.burst * interval + min(interval / 2, SLACK))

    def check(self, key: str, cost: float) -> GcraCheck:
        return GcraCheck(key, self.interval, self.capacity, cost)

    def __str__(self) -> str:
        text = f"{self.count}/{_window_text(self.window)}"
        return text if self.burst == self.count else f"{text} burst {self.burst}"


@dataclass(frozen=True, slots=True)
class Policy:
    """Limits decided together (all consume or none does), under a name for the headers."""

    limits: tuple[Limit, ...]
    name: str = "default"

    def __str__(self) -> str:
        return ";".join(str(limit) for limit in self.limits)


def parse_policy(text: str | Policy, name: str = "default") -> Policy:
    """Parse a policy string, or :class:`ConfigurationError` saying what is accepted."""
    if isinstance(text, Policy):
        return text
    if not isinstance(text, str):
        raise ConfigurationError(f"a rate-limit policy is needed; {ACCEPTED}")
    return _parse(text, name)


@functools.lru_cache(maxsize=256)
def _parse(text: str, name: str) -> Policy:
    # Cached: policies are few and often passed as text on every call (a hot path).
    if not text.strip():
        raise ConfigurationError(f"a rate-limit policy is needed; {ACCEPTED}")
    limits = tuple(_parse_limit(part) for part in text.split(";") if part.strip())
    if len(limits) > 8:
        raise ConfigurationError(f"a policy holds at most 8 limits; {ACCEPTED}")
    if not limits:
        raise ConfigurationError(f"{text!r} holds no limit; {ACCEPTED}")
    return Policy(limits, name)


def _parse_limit(text: str) -> Limit:
    found = _LIMIT.match(text)
    if found is None:
        raise ConfigurationError(f"{text.strip()!r} is not a rate limit; {ACCEPTED}")
    unit = found["unit"].lower()
    if unit not in _UNITS:
        raise ConfigurationError(
            f"unknown time unit {found['unit']!r} in {text.strip()!r}; {ACCEPTED}"
        )
    count, every = int(found["count"]), int(found["every"] or 1)
    burst = int(found["burst"]) if found["burst"] else count
    if count < 1 or every < 1 or burst < 1:
        raise ConfigurationError(f"{text.strip()!r}: counts must be at least 1; {ACCEPTED}")
    return Limit(count, every * _UNITS[unit], burst)


def _window_text(window: float) -> str:
    for name, seconds in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if window == seconds:
            return name
    return f"{int(window)} seconds"


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of a rate-limit check.

    ``remaining``: units still admitted now (the tightest limit's). ``reset_after``: seconds
    until every limit is back to its full burst. ``retry_after``: seconds until the refused
    request would be admitted (0 when allowed). ``limit`` is the tightest limit, for headers.
    ``degraded`` is set when the store could not be asked and the limit failed open.
    """

    allowed: bool
    remaining: int
    reset_after: float
    retry_after: float
    limit: Limit
    policy: Policy
    degraded: bool = False
    #: per limit of the policy: (remaining, seconds until its burst is whole again)
    per_limit: tuple[tuple[int, float], ...] = ()


def decide(policy: Policy, cost: float, allowed: tuple[bool, ...], tats: tuple[float, ...],
           now: float) -> Decision:  # fmt: skip
    """Turn the store's per-limit answer into one :class:`Decision`."""
    ok = all(allowed)
    remaining, reset_after, retry_after = [], [], []
    for limit, fits, tat in zip(policy.limits, allowed, tats, strict=True):
        held = tat if ok else tat - cost * limit.interval  # denied: nothing was stored
        ahead = max(held - now, 0.0)
        remaining.append(max(math.floor((limit.capacity - ahead) / limit.interval), 0))
        reset_after.append(ahead)
        if fits:
            retry_after.append(0.0)
        elif cost * limit.interval > limit.capacity:
            retry_after.append(math.inf)  # more than the burst: no wait will ever admit it
        else:
            retry_after.append(max(tat - limit.capacity - now, 0.0))
    tightest = min(range(len(remaining)), key=remaining.__getitem__)
    if not ok:
        remaining = [0 if not fits else r for r, fits in zip(remaining, allowed, strict=True)]
    return Decision(
        allowed=ok,
        remaining=remaining[tightest] if ok else 0,
        reset_after=max(reset_after),
        retry_after=0.0 if ok else max(retry_after),
        limit=policy.limits[tightest],
        policy=policy,
        per_limit=tuple(zip(remaining, reset_after, strict=True)),
    )
