"""The GCRA arithmetic that turns a store's answer into a rate-limit decision.

Policies themselves (their text form and parsing) live in :mod:`sessionward.rate_policy`,
below this package and :mod:`sessionward.config`; they are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from ..rate_policy import ACCEPTED, SLACK, Limit, Policy, parse_policy

__all__ = [
    "ACCEPTED",
    "SLACK",
    "Decision",
    "Limit",
    "Policy",
    "decide",
    "decide_one",
    "parse_policy",
]


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
