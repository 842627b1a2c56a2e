"""Policy text and the GCRA arithmetic of ``decide()``: pure, no store, no clock."""

from __future__ import annotations

import math
from typing import Any

import pytest

from sessionward.config import Settings
from sessionward.errors import ConfigurationError
from sessionward.limits import Decision, Limit, Policy, parse_policy
from sessionward.limits.policy import ACCEPTED, decide
from sessionward.stores.records import GcraCheck

SECOND, MINUTE, HOUR, DAY = 1.0, 60.0, 3600.0, 86400.0


@pytest.mark.parametrize(
    ("text", "limits"),
    [
        ("10/second", [(10, SECOND, 10)]),
        ("100/minute;1000/hour", [(100, MINUTE, 100), (1000, HOUR, 1000)]),
        ("5 per 30 seconds", [(5, 30.0, 5)]),
        ("100/minute burst 20", [(100, MINUTE, 20)]),
        ("5 per 2 hours burst 1", [(5, 2 * HOUR, 1)]),
        ("7 per day", [(7, DAY, 7)]),
        ("5/30 seconds", [(5, 30.0, 5)]),
        ("3/s", [(3, SECOND, 3)]),
        ("3/sec", [(3, SECOND, 3)]),
        ("3/secs", [(3, SECOND, 3)]),
        ("3/seconds", [(3, SECOND, 3)]),
        ("3/m", [(3, MINUTE, 3)]),
        ("3/min", [(3, MINUTE, 3)]),
        ("3/mins", [(3, MINUTE, 3)]),
        ("3/minutes", [(3, MINUTE, 3)]),
        ("3/h", [(3, HOUR, 3)]),
        ("3/hour", [(3, HOUR, 3)]),
        ("3/hours", [(3, HOUR, 3)]),
        ("3/d", [(3, DAY, 3)]),
        ("3/day", [(3, DAY, 3)]),
        ("3/days", [(3, DAY, 3)]),
        ("  10 / SECOND ; 2 Per 3 Minutes BURST 4 ", [(10, SECOND, 10), (2, 3 * MINUTE, 4)]),
        ("10/second;", [(10, SECOND, 10)]),
        ("1/minute burst 50", [(1, MINUTE, 50)]),
        ("999999999/second", [(999_999_999, SECOND, 999_999_999)]),
        (";".join(f"{n}/hour" for n in range(1, 9)), [(n, HOUR, n) for n in range(1, 9)]),
    ],
)
def test_accepted_policies(text: str, limits: list[tuple[int, float, int]]) -> None:
    policy = parse_policy(text)
    assert [(lim.count, lim.window, lim.burst) for lim in policy.limits] == limits
    assert policy.name == "default"


def test_a_policy_passes_through_and_takes_a_name() -> None:
    policy = parse_policy("5/minute", "api")
    assert policy.name == "api"
    assert parse_policy(policy) is policy


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "a rate-limit policy is needed"),
        ("   ", "a rate-limit policy is needed"),
        (";", "';' holds no limit"),
        ("ten/second", "'ten/second' is not a rate limit"),
        ("10 seconds", "'10 seconds' is not a rate limit"),
        ("10/", "'10/' is not a rate limit"),
        ("10/30", "'10/30' is not a rate limit"),
        ("-1/second", "'-1/second' is not a rate limit"),
        ("1.5/second", "'1.5/second' is not a rate limit"),
        ("1e3/second", "'1e3/second' is not a rate limit"),
        ("1234567890/second", "'1234567890/second' is not a rate limit"),
        ("10/second burst", "'10/second burst' is not a rate limit"),
        ("10/second burst -2", "'10/second burst -2' is not a rate limit"),
        ("10/second, 100/minute", "'10/second, 100/minute' is not a rate limit"),
        ("10/second;bogus", "'bogus' is not a rate limit"),
        ("10/fortnight", "unknown time unit 'fortnight' in '10/fortnight'"),
        ("10/ms", "unknown time unit 'ms' in '10/ms'"),
        ("10/hr", "unknown time unit 'hr' in '10/hr'"),
        ("0/second", "'0/second': counts must be at least 1"),
        ("10 per 0 seconds", "'10 per 0 seconds': counts must be at least 1"),
        ("10/second burst 0", "'10/second burst 0': counts must be at least 1"),
        (";".join(["1/second"] * 9), "a policy holds at most 8 limits"),
    ],
)
def test_rejected_policies_say_what_is_accepted(text: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_policy(text)
    message = str(caught.value)
    assert says in message
    assert message.endswith(ACCEPTED)
    assert '"N/unit" or "N per [M] units"' in message and "burst B" in message
    assert "units: second, minute, hour, day" in message


def test_a_policy_that_is_not_text_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="a rate-limit policy is needed"):
        parse_policy(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    ["10/second", "100/minute;1000/hour", "5 per 30 seconds", "100/minute burst 20",
     "3 per 2 hours", "7/day", "1 per 30 days", "2 per 1000000 seconds burst 1"],
)  # fmt: skip
def test_str_is_a_policy_text_that_parses_back(text: str) -> None:
    policy = parse_policy(text)
    assert parse_policy(str(policy)).limits == policy.limits


@pytest.mark.parametrize(
    ("limit", "interval", "capacity"),
    [
        (Limit(10, SECOND, 10), 0.1, 1.0 + 0.001),
        (Limit(5, 10.0, 5), 2.0, 10.0 + 0.001),
        (Limit(100, MINUTE, 20), 0.6, 12.0 + 0.001),
        (Limit(1000, SECOND, 1000), 0.001, 1.0 + 0.0005),  # slack: half an interval at most
        (Limit(1, DAY, 1), DAY, DAY + 0.001),
    ],
)
def test_interval_and_capacity(limit: Limit, interval: float, capacity: float) -> None:
    assert limit.interval == pytest.approx(interval, rel=1e-12)
    assert limit.capacity == pytest.approx(capacity, rel=1e-12)
    assert limit.check("k#0", 2) == GcraCheck("k#0", limit.interval, limit.capacity, 2)


# decide(): the store answered (allowed per limit, candidate TAT per limit) at `NOW`.
NOW = 1000.0
FIVE_PER_10S = Policy((Limit(5, 10.0, 5),), "p")  # one unit every 2 s, 5 at once
THREE_A_MINUTE_FIVE_AN_HOUR = Policy((Limit(3, MINUTE, 3), Limit(5, HOUR, 5)), "p")


def _summary(d: Decision) -> tuple[Any, ...]:
    per_limit = tuple((r, round(t, 9)) for r, t in d.per_limit)
    rounded = round(d.reset_after, 9), round(d.retry_after, 9)
    return d.allowed, d.remaining, *rounded, d.limit, per_limit


@pytest.mark.parametrize(
    ("case", "policy", "cost", "allowed", "tats", "expected"),
    [
        # a fresh key: the first unit leaves 4, and the burst is whole again in 2 s
        ("first", FIVE_PER_10S, 1, (True,), (NOW + 2,), (True, 4, 2.0, 0.0, 0, ((4, 2.0),))),
        ("last of burst", FIVE_PER_10S, 1, (True,), (NOW + 10,),
         (True, 0, 10.0, 0.0, 0, ((0, 10.0),))),
        # refused: nothing was stored (the TAT held is the candidate less the cost); the
        # candidate fits once it is no more than the capacity ahead: 12 - 10.001 s from now
        ("refused", FIVE_PER_10S, 1, (False,), (NOW + 12,),
         (False, 0, 10.0, 1.999, 0, ((0, 10.0),))),
        ("half refilled", FIVE_PER_10S, 1, (True,), (NOW + 7,),
         (True, 1, 7.0, 0.0, 0, ((1, 7.0),))),
        # a zero cost consumes nothing: it reports what is left
        ("cost 0, fresh", FIVE_PER_10S, 0, (True,), (NOW,), (True, 5, 0.0, 0.0, 0, ((5, 0.0),))),
        ("cost 0, used", FIVE_PER_10S, 0, (True,), (NOW + 6,), (True, 2, 6.0, 0.0, 0, ((2, 6.0),))),
        # a cost of 3 with 2 left is refused; 2 s later it fits
        ("cost 3 refused", FIVE_PER_10S, 3, (False,), (NOW + 6 + 6,),
         (False, 0, 6.0, 1.999, 0, ((0, 6.0),))),
        ("cost 5, fresh", FIVE_PER_10S, 5, (True,), (NOW + 10,),
         (True, 0, 10.0, 0.0, 0, ((0, 10.0),))),
        # two limits: the tightest one speaks for the decision
        ("both fit", THREE_A_MINUTE_FIVE_AN_HOUR, 1, (True, True), (NOW + 40, NOW + 1440),
         (True, 1, 1440.0, 0.0, 0, ((1, 40.0), (3, 1440.0)))),
        ("hour tighter", THREE_A_MINUTE_FIVE_AN_HOUR, 1, (True, True), (NOW + 20, NOW + 2880),
         (True, 1, 2880.0, 0.0, 1, ((2, 20.0), (1, 2880.0)))),
        # the minute refuses, the hour would fit: nothing is consumed from either
        ("minute refuses", THREE_A_MINUTE_FIVE_AN_HOUR, 1, (False, True),
         (NOW + 80, NOW + 2880), (False, 0, 2160.0, 19.999, 0, ((0, 60.0), (2, 2160.0)))),
        ("hour refuses", THREE_A_MINUTE_FIVE_AN_HOUR, 1, (True, False),
         (NOW + 40, NOW + 4320), (False, 0, 3600.0, 719.999, 1, ((2, 20.0), (0, 3600.0)))),
        ("both refuse", THREE_A_MINUTE_FIVE_AN_HOUR, 1, (False, False),
         (NOW + 80, NOW + 4320), (False, 0, 3600.0, 719.999, 0, ((0, 60.0), (0, 3600.0)))),
    ],
)  # fmt: skip
def test_decide(
    case: str,
    policy: Policy,
    cost: float,
    allowed: tuple[bool, ...],
    tats: tuple[float, ...],
    expected: tuple[bool, int, float, float, int, tuple[tuple[int, float], ...]],
) -> None:
    decision = decide(policy, cost, allowed, tats, NOW)
    ok, remaining, reset_after, retry_after, tightest, per_limit = expected
    assert _summary(decision) == (
        ok, remaining, reset_after, retry_after, policy.limits[tightest], per_limit,
    )  # fmt: skip
    assert decision.policy is policy and not decision.degraded


def test_decide_with_a_burst_smaller_than_the_count() -> None:
    policy = Policy((Limit(100, MINUTE, 20),))  # 20 at once, then one every 0.6 s
    first = decide(policy, 1, (True,), (NOW + 0.6,), NOW)
    assert (first.allowed, first.remaining) == (True, 19)
    spent = decide(policy, 1, (False,), (NOW + 12.6,), NOW)
    assert (spent.allowed, spent.remaining) == (False, 0)
    assert spent.retry_after == pytest.approx(0.599, abs=1e-9)
    assert spent.reset_after == pytest.approx(12.0, abs=1e-9)


def test_decide_needs_one_answer_per_limit() -> None:
    with pytest.raises(ValueError, match="zip"):
        decide(THREE_A_MINUTE_FIVE_AN_HOUR, 1, (True,), (NOW,), NOW)


def test_remaining_is_never_negative_nor_retry_after_when_allowed() -> None:
    # a TAT that float rounding left a hair beyond the capacity still reads as 0 left
    limit = Limit(5, 10.0, 5)
    over = decide(Policy((limit,)), 1, (True,), (NOW + limit.capacity + 1e-7,), NOW)
    assert (over.remaining, over.retry_after) == (0, 0.0)
    assert not math.isnan(over.reset_after)


@pytest.mark.parametrize("field", ["ip_rate_limit", "api_rate_limit", "ws_rate_limit"])
def test_settings_refuse_a_bad_policy_with_the_same_sentence(field: str) -> None:
    with pytest.raises(ValueError, match="unknown time unit 'parsec'") as caught:
        Settings.model_validate({field: "10/parsec"})
    assert ACCEPTED in str(caught.value)
