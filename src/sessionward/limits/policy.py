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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ..errors import ConfigurationError
from ..stores.records import GcraCheck

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
    for name, seconds in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if window == seconds:
            return name
    return f"{int(window)} seconds"


class Decision(NamedTuple):
    """The outcome of a rate-limit check.

    ``remaining``: units still admitted now (the tightest limit's). ``reset_after``: seconds
    until every limit is back to its full burst. ``retry_after``: seconds until the refused
    request would be admitted (0 when allowed). ``limit`` is the tightest limit, for headers.
    ``degraded`` is set when the store could not be asked and the limit failed open.

    A named tuple because the limiter makes one per call: three times cheaper to build than
    a frozen dataclass, and as immutable.
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


_floor = math.floor
# Decision's fields in order, without the keyword handling of its generated __new__ (what
# namedtuple's own _make does, less its length check): a third of decide_one's time
_build = tuple.__new__


def decide(policy: Policy, cost: float, allowed: Sequence[bool], tats: Sequence[float],
           now: float) -> Decision:  # fmt: skip
    """Turn the store's per-limit answer into one :class:`Decision`.

    Per limit: ``ahead``, how far its TAT runs ahead of now (a refusal stored nothing, so
    the TAT held is the candidate less the cost), is when its burst is whole again; the
    units left are what the capacity holds beyond that. The decision speaks for the tightest
    limit (the first with the fewest left), resets when the last limit is whole and, when
    refused, may be retried once every refusing limit fits."""
    limits = policy.limits
    if len(allowed) == 1 == len(tats) == len(limits):
        return decide_one(policy, cost, allowed[0], tats[0], now)
    ok = all(allowed)
    per_limit = []
    tightest = fewest = 0
    reset_after = retry_after = 0.0
    for n, (limit, fits, tat) in enumerate(zip(limits, allowed, tats, strict=True)):
        interval, capacity = limit.interval, limit.capacity
        ahead = (tat if ok else tat - cost * interval) - now  # denied: nothing was stored
        if ahead < 0.0:  # max(ahead, 0.0)
            ahead = 0.0
        left = _floor((capacity - ahead) / interval)
        if left < 0:
            left = 0
        if fits:
            wait = 0.0
        elif cost * interval > capacity:
            wait = math.inf  # more than the burst: no wait will ever admit it
        else:
            wait = tat - capacity - now
            if wait < 0.0:
                wait = 0.0
        # the first of the fewest left, the first of the latest reset and retry (as min()
        # and max() pick them)
        if n == 0 or left < fewest:
            tightest, fewest = n, left
        if n == 0 or ahead > reset_after:
            reset_after = ahead
        if n == 0 or wait > retry_after:
            retry_after = wait
        per_limit.append((left if fits or ok else 0, ahead))
    if not per_limit:
        raise ValueError("a policy holds at least one limit")
    return Decision(
        ok,
        fewest if ok else 0,
        reset_after,
        0.0 if ok else retry_after,
        limits[tightest],
        policy,
        False,
        tuple(per_limit),
    )


def decide_one(policy: Policy, cost: float, allowed: bool, tat: float, now: float) -> Decision:
    """:func:`decide` for a policy of one limit, on the store's bare answer: the same
    arithmetic, in the same order (so the same floats), without the loops."""
    limit = policy.limits[0]
    interval = limit.interval
    capacity = limit.capacity
    ahead = (tat if allowed else tat - cost * interval) - now  # denied: nothing was stored
    if ahead < 0.0:  # max(ahead, 0.0), as decide() says it
        ahead = 0.0
    if allowed:
        remaining = _floor((capacity - ahead) / interval)
        if remaining < 0:
            remaining = 0
        return _build(Decision, (True, remaining, ahead, 0.0, limit, policy, False,
                                 ((remaining, ahead),)))  # fmt: skip
    if cost * interval > capacity:
        retry_after = math.inf  # more than the burst: no wait will ever admit it
    else:
        retry_after = tat - capacity - now
        if retry_after < 0.0:  # max(..., 0.0)
            retry_after = 0.0
    return _build(Decision, (False, 0, ahead, retry_after, limit, policy, False, ((0, ahead),)))
