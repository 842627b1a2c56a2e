"""The rate limiter on every backend, with a driven clock: every decision of a sequence, the
promises a decision makes, and exactly the limit admitted however many contenders race."""

from __future__ import annotations

import math
import threading
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import Any

import anyio
import pytest

from sessionward import FakeClock, SyncWard, open_ward
from sessionward.errors import ConfigurationError, InvalidArgument, RateLimited
from sessionward.limits import Decision
from sessionward.testing.races import race, run_in_processes
from sessionward.ward import Ward
from tests.conftest import SHARED_BACKENDS

pytestmark = pytest.mark.anyio

FIVE_PER_10S = "5 per 10 seconds"  # 5 at once, then one every 2 s
CONTENDERS, LIMIT = 200, 50
HOT = "50/hour"  # one unit every 72 s: a frozen clock refills nothing during a race


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def ward(store_url: str, clock: FakeClock) -> AsyncIterator[Ward]:
    async with open_ward(store_url, clock=clock, sweep=False) as ward:
        yield ward


def seen(d: Decision) -> tuple[bool, int, float, float]:
    # TATs are ~1.7e9 s, so a difference of two of them carries ~2.4e-7 s of rounding
    return d.allowed, d.remaining, round(d.reset_after, 6), round(d.retry_after, 6)


def per_limit(d: Decision) -> list[tuple[int, float]]:
    return [(remaining, round(reset, 6)) for remaining, reset in d.per_limit]


# (seconds to advance first, cost) -> (allowed, remaining, reset_after, retry_after)
SEQUENCE = [
    ((0, 1), (True, 4, 2.0, 0.0)),
    ((0, 1), (True, 3, 4.0, 0.0)),
    ((0, 1), (True, 2, 6.0, 0.0)),
    ((0, 1), (True, 1, 8.0, 0.0)),
    ((0, 1), (True, 0, 10.0, 0.0)),
    ((0, 1), (False, 0, 10.0, 1.999)),  # 12 s ahead is 1.999 s past the capacity (10.001 s)
    ((1, 1), (False, 0, 9.0, 0.999)),
    ((1, 1), (True, 0, 10.0, 0.0)),  # one unit came back after 2 s
    ((5, 1), (True, 1, 7.0, 0.0)),  # 2.5 more came back
    ((7, 1), (True, 4, 2.0, 0.0)),  # the TAT has passed: the key is as good as new
    ((0, 3), (True, 1, 8.0, 0.0)),
    ((0, 2), (False, 0, 8.0, 1.999)),  # 2 do not fit in 1; nothing is consumed
    ((1, 2), (False, 0, 7.0, 0.999)),
    ((0, 0), (True, 1, 7.0, 0.0)),  # a zero cost reports and consumes nothing
    ((3, 2), (True, 1, 8.0, 0.0)),
    ((100, 5), (True, 0, 10.0, 0.0)),  # a rested key takes a whole burst at once
    ((0, 1), (False, 0, 10.0, 1.999)),
]


async def test_every_step_of_a_sequence(ward: Ward, clock: FakeClock) -> None:
    refused = 0
    for step, ((advance, cost), expected) in enumerate(SEQUENCE):
        clock.advance(advance)
        decision = await ward.limits.hit("k", FIVE_PER_10S, cost)
        assert seen(decision) == expected, f"step {step}"
        assert per_limit(decision) == [(expected[1], expected[2])], f"step {step}"
        assert decision.limit.count == 5 and not decision.degraded
        refused += not expected[0]
    assert ward.limits.stats.decisions == len(SEQUENCE)
    assert ward.limits.stats.refused == refused == 5
    assert (ward.limits.stats.failed_open, ward.limits.stats.failed_closed) == (0, 0)


@pytest.mark.parametrize(
    ("policy", "cost"),
    [(FIVE_PER_10S, 1), (FIVE_PER_10S, 3), ("3/minute;5/hour", 1), ("2/minute;3/hour", 2),
     ("100/minute burst 20", 1)],
)  # fmt: skip
async def test_waiting_retry_after_admits_the_refused_request(
    ward: Ward, clock: FakeClock, policy: str, cost: float
) -> None:
    refused = await _first_refusal(ward, policy, cost)
    assert refused.retry_after > 0.01
    clock.advance(refused.retry_after - 0.01)
    assert not (await ward.limits.peek("k", policy, cost)).allowed, "admitted early"
    clock.advance(0.01 + 1e-6)  # a microsecond above the promise: far above float rounding
    assert (await ward.limits.hit("k", policy, cost)).allowed, "retry_after promised too soon"


async def _first_refusal(ward: Ward, policy: str, cost: float) -> Decision:
    for _ in range(100):
        decision = await ward.limits.hit("k", policy, cost)
        if not decision.allowed:
            return decision
    raise AssertionError("never refused")


@pytest.mark.parametrize("policy", [FIVE_PER_10S, "3/minute;5/hour", "100/minute burst 20"])
async def test_waiting_reset_after_makes_every_limit_whole(
    ward: Ward, clock: FakeClock, policy: str
) -> None:
    for _ in range(3):
        last = await ward.limits.hit("k", policy)
    assert last.reset_after > 0
    bursts = [limit.burst for limit in last.policy.limits]
    clock.advance(last.reset_after - 0.01)
    assert [r for r, _ in (await ward.limits.peek("k", policy, 0)).per_limit] != bursts
    clock.advance(0.01 + 1e-6)
    whole = await ward.limits.peek("k", policy, 0)
    assert per_limit(whole) == [(burst, 0.0) for burst in bursts]


async def test_burst_then_the_rate(ward: Ward, clock: FakeClock) -> None:
    policy = "100/minute burst 20"  # 20 at once, then one every 0.6 s
    burst = [await ward.limits.hit("k", policy) for _ in range(21)]
    assert [d.remaining for d in burst[:20]] == list(range(19, -1, -1))
    assert all(d.allowed for d in burst[:20]) and not burst[20].allowed
    assert burst[20].retry_after == pytest.approx(0.599, abs=1e-5)  # 21 steps of rounding
    assert burst[19].reset_after == pytest.approx(12.0, abs=1e-5)
    clock.advance(0.6)
    assert (await ward.limits.hit("k", policy)).allowed
    clock.advance(6)  # ten more units
    later = [await ward.limits.hit("k", policy) for _ in range(11)]
    assert [d.allowed for d in later] == [True] * 10 + [False]


async def test_a_cost_above_the_burst_is_never_allowed(ward: Ward, clock: FakeClock) -> None:
    policy = "5/minute"
    for _ in range(3):
        refused = await ward.limits.hit("k", policy, 6)
        assert (refused.allowed, refused.remaining) == (False, 0)
        clock.advance(86400)
    with pytest.raises(RateLimited):
        await ward.limits.enforce("k", policy, 6)
    whole = await ward.limits.hit("k", policy, 5)  # the refusals consumed nothing
    assert (whole.allowed, whole.remaining) == (True, 0)
    assert not (await ward.limits.hit("other", "5/minute burst 2", 3)).allowed


async def test_a_refusal_that_no_wait_cures_promises_no_wait(ward: Ward, clock: FakeClock) -> None:
    # 6 units never fit in a burst of 5, so no finite retry_after can come true
    refused = await ward.limits.hit("k", "5/minute", 6)
    assert not refused.allowed
    if math.isfinite(refused.retry_after):
        clock.advance(refused.retry_after + 1e-6)
        again = await ward.limits.hit("k", "5/minute", 6)
        assert again.allowed, (
            f"retry_after={refused.retry_after:.6f} s, yet after waiting it the request is "
            f"still refused (now retry_after={again.retry_after:.6f} s), and always will be"
        )


async def test_peek_consumes_nothing(ward: Ward, clock: FakeClock) -> None:
    policy = "5/minute;6/hour"  # a unit every 12 s, and every 600 s
    peeks = [await ward.limits.peek("k", policy) for _ in range(10)]
    assert [seen(p) for p in peeks] == [(True, 4, 600.0, 0.0)] * 10
    assert [per_limit(p) for p in peeks] == [[(4, 12.0), (5, 600.0)]] * 10
    hits = [await ward.limits.hit("k", policy) for _ in range(5)]
    assert seen(hits[0]) == seen(peeks[0])  # peek said what hit would say
    assert [d.remaining for d in hits] == [4, 3, 2, 1, 0]
    before = await ward.limits.peek("k", policy)
    assert not before.allowed and before.retry_after == pytest.approx(11.999, abs=1e-6)
    assert seen(await ward.limits.peek("k", policy)) == seen(before)
    assert seen(await ward.limits.hit("k", policy)) == seen(before)
    clock.advance(12)
    assert (await ward.limits.peek("k", policy)).allowed
    assert per_limit(await ward.limits.peek("k", policy, 0)) == [(1, 48.0), (1, 2988.0)]


async def test_limits_of_a_policy_consume_together_or_not_at_all(
    ward: Ward, clock: FakeClock
) -> None:
    policy = "3/minute;5/hour"  # a unit every 20 s, and every 720 s
    first = [await ward.limits.hit("k", policy) for _ in range(3)]
    assert [d.allowed for d in first] == [True] * 3
    assert per_limit(first[-1]) == [(0, 60.0), (2, 2160.0)]
    by_minute = await ward.limits.hit("k", policy)  # the minute refuses, the hour would fit
    assert not by_minute.allowed and by_minute.limit.count == 3
    assert by_minute.retry_after == pytest.approx(19.999, abs=1e-6)
    assert per_limit(by_minute) == [(0, 60.0), (2, 2160.0)]  # the hour gave nothing
    clock.advance(20)
    fourth = await ward.limits.hit("k", policy)
    assert fourth.allowed and per_limit(fourth) == [(0, 60.0), (1, 2860.0)]
    clock.advance(60)
    fifth = await ward.limits.hit("k", policy)
    assert fifth.allowed and per_limit(fifth) == [(2, 20.0), (0, 3520.0)]
    assert fifth.limit.count == 5 and fifth.remaining == 0
    by_hour = await ward.limits.hit("k", policy)  # the hour refuses, the minute would fit
    assert not by_hour.allowed and by_hour.limit.count == 5
    assert by_hour.retry_after == pytest.approx(639.999, abs=1e-6)
    assert per_limit(by_hour) == [(2, 20.0), (0, 3520.0)]  # the minute gave nothing
    assert per_limit(await ward.limits.peek("k", policy, 0)) == [(2, 20.0), (0, 3520.0)]


async def test_reset_forgets_one_key_under_every_limit(ward: Ward) -> None:
    policy = "2/minute;3/hour"
    for key in ("a", "b"):
        for _ in range(3):
            await ward.limits.hit(key, policy)
        assert not (await ward.limits.peek(key, policy)).allowed
    await ward.limits.reset("a")
    await ward.limits.reset("never-used")
    fresh = await ward.limits.hit("a", policy)
    assert fresh.allowed and per_limit(fresh) == [(1, 30.0), (2, 1200.0)]
    assert not (await ward.limits.hit("b", policy)).allowed


async def test_enforce_raises_with_retry_after(ward: Ward) -> None:
    policy = "2/minute"  # a unit every 30 s
    allowed = [await ward.limits.enforce("k", policy) for _ in range(2)]
    assert [d.remaining for d in allowed] == [1, 0]
    with pytest.raises(RateLimited, match="rate limit exceeded") as caught:
        await ward.limits.enforce("k", policy)
    assert caught.value.retry_after == pytest.approx(29.999, abs=1e-6)
    after = await ward.limits.peek("k", policy)  # the refusal consumed nothing
    assert after.retry_after == pytest.approx(caught.value.retry_after, abs=1e-9)


async def test_keys_and_limits_are_apart(ward: Ward) -> None:
    await ward.limits.hit("user:{a}", "1/minute")
    assert not (await ward.limits.hit("user:{a}", "1/minute")).allowed
    for other in ("user:{b}", "user:{a}#0", "USER:{a}", "user:{a} "):
        assert (await ward.limits.hit(other, "1/minute")).allowed, other


async def test_bad_arguments_are_refused_and_consume_nothing(ward: Ward) -> None:
    for key in ("", "k" * 513, None):
        with pytest.raises(InvalidArgument, match="1 to 512 characters"):
            await ward.limits.hit(key, "1/minute")  # type: ignore[arg-type]
    for cost in (-1, 1e9 + 1, math.nan):
        with pytest.raises(ValueError, match="cost must be between 0 and 1e9"):
            await ward.limits.hit("k", "1/minute", cost)
    with pytest.raises(ConfigurationError, match="not a rate limit"):
        await ward.limits.hit("k", "lots")
    assert (await ward.limits.hit("k" * 512, "1/minute")).allowed
    assert (await ward.limits.hit("k", "1/minute")).remaining == 0


# Exactly LIMIT of CONTENDERS released together are admitted: the remaining counts handed
# out are each of LIMIT-1 .. 0 once, and every refusal names the same wait.


def assert_exact(outcomes: Sequence[Any]) -> None:
    errors = [o for o in outcomes if not isinstance(o, tuple)]
    assert not errors, errors[:3]
    allowed = [o for o in outcomes if o[0]]
    refused = [o for o in outcomes if not o[0]]
    assert len(allowed) == LIMIT and len(refused) == len(outcomes) - LIMIT
    assert sorted(o[1] for o in allowed) == list(range(LIMIT))
    assert {o[1] for o in refused} == {0}
    assert all(o[2] == pytest.approx(72 - 0.001, abs=1e-6) for o in refused)


def outcome(d: Decision | BaseException) -> tuple[bool, int, float] | BaseException:
    return d if isinstance(d, BaseException) else (d.allowed, d.remaining, d.retry_after)


def test_threads_admit_exactly_the_limit(store_url: str) -> None:
    # one SyncWard shared by every thread (a memory:// store lives in one Ward)
    with SyncWard(store_url, clock=FakeClock(), sweep=False) as ward:
        barrier = threading.Barrier(CONTENDERS)
        outcomes: list[Any] = [None] * CONTENDERS

        def contender(i: int) -> None:
            barrier.wait()
            try:
                outcomes[i] = outcome(ward.limits.hit("hot", HOT))
            except Exception as exc:
                outcomes[i] = exc

        threads = [threading.Thread(target=contender, args=(i,)) for i in range(CONTENDERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads)
        assert_exact(outcomes)
        assert ward.limits.peek("hot", HOT, 0).remaining == 0


async def test_tasks_admit_exactly_the_limit(ward: Ward) -> None:
    policy = f"{HOT};1000/day"
    decisions = await race([partial(ward.limits.hit, "hot", policy)] * CONTENDERS)
    assert_exact([outcome(d) for d in decisions])
    days = sorted(d.per_limit[1][0] for d in decisions if d.allowed)
    assert days == list(range(1000 - LIMIT, 1000))  # the day limit counted the same 50
    assert (await ward.limits.peek("hot", policy, 0)).per_limit[1][0] == 1000 - LIMIT


@pytest.mark.parametrize("backend", SHARED_BACKENDS, indirect=True)
async def test_processes_admit_exactly_the_limit(store_url: str) -> None:
    start = FakeClock().now()  # every process reads the same frozen time
    async with open_ward(store_url, clock=FakeClock(start), sweep=False) as ward:
        children = [(_hit_child, (store_url, start, CONTENDERS // 4)) for _ in range(4)]
        results = await run_in_processes(children)
        assert [len(child) for child in results] == [CONTENDERS // 4] * 4
        assert_exact([tuple(o) for child in results for o in child])
        assert (await ward.limits.peek("hot", HOT, 0)).remaining == 0


async def _hit_child(url: str, start: float, n: int, barrier: Any) -> list[tuple[bool, int, float]]:
    async with open_ward(url, clock=FakeClock(start), sweep=False) as ward:
        await ward.limits.peek("warm-up", HOT)  # connected before the race starts
        await anyio.to_thread.run_sync(barrier.wait)
        decisions = await race([partial(ward.limits.hit, "hot", HOT)] * n)
    failed = [d for d in decisions if isinstance(d, BaseException)]
    if failed:
        raise failed[0]
    return [(d.allowed, d.remaining, d.retry_after) for d in decisions]
