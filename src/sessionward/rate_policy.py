"""Rate-limit policies: their text form, parsed into limits (and GCRA's figures for each).

Below both :mod:`sessionward.config` (which checks the policies in ``Settings``) and
:mod:`sessionward.limits` (which decides with them); it imports neither.

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
import re
from dataclasses import dataclass, field

from .errors import ConfigurationError
from .stores.records import GcraCheck

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
    #: (interval, capacity) of each limit, as a store's GCRA step takes them: computed once
    params: tuple[tuple[float, float], ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        params = tuple((limit.interval, limit.capacity) for limit in self.limits)
        object.__setattr__(self, "params", params)

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
    """The window in the largest unit that divides it, so that the text parses back (a
    window was written as at most 9 digits of some unit, so it fits in 9 digits of that)."""
    for name, seconds in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if window == seconds:
            return name
        if window % seconds == 0:
            return f"{int(window // seconds)} {name}s"
    return f"{int(window)} seconds"
