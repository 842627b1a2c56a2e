"""The limiter's synchronous path (``DirectLimiter``, for memory://) against its general path:
the same decisions to the last bit of every float, the same errors, stats and failure
handling; SyncWard takes it without its event loop, and threads lose no count."""

from __future__ import annotations

import inspect
import math
import random
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from sessionward import FakeClock, SyncWard, open_ward
from sessionward.errors import RateLimited, StorageUnavailable, UnknownSession
from sessionward.limits import Decision, Limit, Policy, RateLimiter, parse_policy
from sessionward.limits.limiter import DirectLimiter
from sessionward.limits.policy import decide, decide_one
from sessionward.stores import create_store
from sessionward.stores.memory import MemoryStore
from sessionward.stores.records import GcraCheck, GcraResult
from tests.stores.test_memory_store import in_fork

POLICIES = ["5 per 10 seconds", "3/minute;5/hour", "100/minute burst 20", "1/second",
            "2/minute;3/hour;10/day", "1000/second"]  # fmt: skip
COSTS = [1, 1, 1, 0, 2, 3, 0.5, 6, 1e9]
KEYS = ["a", "b", "a#0", "k" * 512]


class _AsyncOnly:
    """A memory store seen only through the async LimitStore protocol, as every other
    backend is: a limiter over it takes the general path."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def gcra(self, checks: Sequence[GcraCheck], *, apply: bool = True) -> GcraResult:
        return await self._store.gcra(checks, apply=apply)

    async def reset_limits(self, keys: Sequence[str]) -> None:
        await self._store.reset_limits(keys)

    async def sweep_limits(self, limit: int) -> int:
        return await self._store.sweep_limits(limit)


def _store(clock: FakeClock, url: str = "memory://") -> MemoryStore:
    store = create_store(url, clock=clock)
    assert isinstance(store, MemoryStore)
    return store


def _outcome(result: Decision | BaseException) -> Any:
    if isinstance(result, BaseException):
        return type(result), str(result)
    return result


async def _run(limiter: RateLimiter, op: str, *args: Any, **kwargs: Any) -> Any:
    try:
        return _outcome(await getattr(limiter, op)(*args, **kwargs))
    except Exception as exc:
        return _outcome(exc)


@pytest.mark.anyio
@pytest.mark.parametrize("seed", range(6))
async def test_the_direct_path_decides_as_the_general_path(seed: int) -> None:
    rng = random.Random(seed)
    clock = FakeClock()
    direct = RateLimiter(_store(clock))
    general = RateLimiter(_AsyncOnly(_store(clock)))  # type: ignore[arg-type]
    assert direct._direct is not None and general._direct is None
    for step in range(1500):
        clock.advance(rng.choice([0, 0, 0, 0.001, 0.1, 0.6, 2, 19.999, 100, 5000]))
        op = rng.choice(["hit", "hit", "hit", "peek", "enforce", "reset"])
        key = rng.choice(KEYS)
        if op == "reset":
            args: tuple[Any, ...] = (key,)
        else:
            policy: str | Policy = rng.choice(POLICIES)
            if rng.random() < 0.5:
                policy = parse_policy(policy, "named")
            args = (key, policy, rng.choice(COSTS))
        ours, theirs = await _run(direct, op, *args), await _run(general, op, *args)
        assert ours == theirs, f"step {step}: {op}{args}"
    assert direct.stats == general.stats
    assert direct.stats.refused > 100 and direct.stats.decisions > 1000


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("key", "policy", "cost"),
    [("", "1/second", 1), ("k" * 513, "1/second", 1), (None, "1/second", 1),
     (b"k", "1/second", 1), ("k", "lots", 1), ("k", None, 1), ("k", "1/second", -1),
     ("k", "1/second", math.nan), ("k", "1/second", 1e9 + 1), ("k", "", math.nan)],
)  # fmt: skip
async def test_bad_arguments_fail_alike_on_both_paths(key: Any, policy: Any, cost: Any) -> None:
    clock = FakeClock()
    direct = RateLimiter(_store(clock))
    general = RateLimiter(_AsyncOnly(_store(clock)))  # type: ignore[arg-type]
    for op in ("hit", "peek", "enforce"):
        ours = await _run(direct, op, key, policy, cost)
        assert isinstance(ours, tuple), "refused"
        assert ours == await _run(general, op, key, policy, cost)
    assert direct.stats == general.stats


class _Flaky:
    """A store that fails on demand, with a synchronous path or (``sync=False``) without."""

    def __init__(self, clock: FakeClock, *, sync: bool) -> None:
        self.inner = _store(clock)
        self.down = False
        self.asked = 0
        if sync:
            self.gcra_keys_now = self._gcra_keys_now
            self.gcra_one_now = self._gcra_one_now

    def _ask(self) -> None:
        self.asked += 1
        if self.down:
            raise StorageUnavailable("down")

    def _gcra_keys_now(
        self, keys: Sequence[str], params: Sequence[tuple[float, float]], cost: float,
        apply: bool = True,
    ) -> tuple[tuple[bool, ...], tuple[float, ...], float]:  # fmt: skip
        self._ask()
        return self.inner.gcra_keys_now(keys, params, cost, apply)

    def _gcra_one_now(
        self, key: str, period: float, capacity: float, cost: float, apply: bool = True
    ) -> tuple[bool, float, float]:
        self._ask()
        return self.inner.gcra_one_now(key, period, capacity, cost, apply)

    async def gcra(self, checks: Sequence[GcraCheck], *, apply: bool = True) -> GcraResult:
        self._ask()
        return await self.inner.gcra(checks, apply=apply)

    async def reset_limits(self, keys: Sequence[str]) -> None:
        await self.inner.reset_limits(keys)

    async def sweep_limits(self, limit: int) -> int:
        return await self.inner.sweep_limits(limit)


@pytest.mark.anyio
async def test_a_failing_store_fails_alike_on_both_paths() -> None:
    clock = FakeClock()
    runs = []
    for sync in (True, False):
        store = _Flaky(clock, sync=sync)
        limiter = RateLimiter(store, retry_interval=3600)  # type: ignore[arg-type]
        assert (limiter._direct is not None) == sync
        seen = []
        for down, fail, policy, forget in [
            (False, "closed", "3/hour", False),
            (True, "open", "3/hour", False),  # asks, fails: open, blind, and down a while
            (True, "open", "3/hour;5/day", False),  # down: not asked, open
            (True, "closed", "3/hour", False),  # down: not asked, refused
            (True, "closed", "3/hour;5/day", True),  # the while is over: asks, fails, refused
            (False, "closed", "3/hour", False),  # still down a while: not asked
            (False, "closed", "3/hour", True),  # the while is over: asks, decides
            (False, "open", "3/hour;5/day", False),
        ]:
            store.down = down
            if forget:
                limiter._down_until = 1.0  # the retry interval has passed
            for op in ("hit", "peek", "enforce"):
                outcome = await _run(limiter, op, "k", policy, 1, fail=fail)
                seen.append((outcome, store.asked))
            seen.append((limiter.store_down, limiter._down_until == 0.0))
        runs.append((seen, limiter.stats))
    assert runs[0] == runs[1]
    stats = runs[0][1]
    assert (stats.failed_open, stats.failed_closed, stats.store_errors) == (6, 9, 2)


def _reference_decide(policy: Policy, cost: float, allowed: tuple[bool, ...],
                      tats: tuple[float, ...], now: float) -> Decision:  # fmt: skip
    # decide() as it was before it had a path for one limit: the reference
    ok = all(allowed)
    remaining, reset_after, retry_after = [], [], []
    for limit, fits, tat in zip(policy.limits, allowed, tats, strict=True):
        held = tat if ok else tat - cost * limit.interval
        ahead = max(held - now, 0.0)
        remaining.append(max(math.floor((limit.capacity - ahead) / limit.interval), 0))
        reset_after.append(ahead)
        if fits:
            retry_after.append(0.0)
        elif cost * limit.interval > limit.capacity:
            retry_after.append(math.inf)
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


def test_decide_and_decide_one_are_the_reference_arithmetic() -> None:
    rng = random.Random(7)
    now = 1_700_000_000.0
    for _ in range(20_000):
        limits = tuple(
            Limit(rng.choice([1, 3, 5, 100, 1000]), rng.choice([1.0, 10.0, 60.0, 3600.0]),
                  rng.choice([1, 2, 5, 20, 1000]))
            for _ in range(rng.choice([1, 1, 1, 2, 3]))
        )  # fmt: skip
        policy = Policy(limits, "p")
        cost = rng.choice([0, 1, 1, 2, 0.5, 7, 1e9])
        allowed = tuple(rng.random() < 0.7 for _ in limits)
        tats = tuple(now + rng.choice([-5.0, 0.0, rng.uniform(0, 4000)]) for _ in limits)
        expected = _reference_decide(policy, cost, allowed, tats, now)
        made = decide(policy, cost, allowed, tats, now)
        assert made == expected and type(made) is Decision
        assert [math.copysign(1, x) for x in (made.reset_after, made.retry_after)] == [
            math.copysign(1, x) for x in (expected.reset_after, expected.retry_after)
        ]
        if len(limits) == 1:
            assert decide_one(policy, cost, allowed[0], tats[0], now) == expected


def test_a_made_decision_is_an_immutable_decision() -> None:
    policy = parse_policy("5/second")
    made = decide_one(policy, 1, True, 1000.2, 1000.0)
    plain = Decision(True, 4, made.reset_after, 0.0, policy.limits[0], policy, False,
                     ((4, made.reset_after),))  # fmt: skip
    assert type(made) is Decision and made == plain and hash(made) == hash(plain)
    assert repr(made) == repr(plain)
    with pytest.raises(AttributeError):
        made.allowed = False  # type: ignore[misc]


def test_the_direct_path_has_the_async_signatures() -> None:
    for name in ("hit", "peek", "enforce"):
        ours = inspect.signature(getattr(DirectLimiter, name))
        assert ours == inspect.signature(getattr(RateLimiter, name)), name


class _NoPortal:
    def call(self, *args: Any) -> Any:
        raise AssertionError("the decision went through the event loop")


def test_sync_ward_decides_memory_limits_in_the_calling_thread() -> None:
    clock = FakeClock()
    with SyncWard("memory://", clock=clock, sweep=False) as ward:
        ward.limits._portal = _NoPortal()  # type: ignore[assignment]
        assert [ward.limits.hit("k", "2/minute").remaining for _ in range(2)] == [1, 0]
        assert not ward.limits.peek("k", "2/minute").allowed
        with pytest.raises(RateLimited, match="rate limit exceeded"):
            ward.limits.enforce("k", "2/minute")
        with pytest.raises(AssertionError, match="event loop"):
            ward.limits.reset("k")  # not a decision: through the portal, as before


def test_sync_ward_on_a_store_with_io_keeps_the_portal(tmp_path: Any) -> None:
    with SyncWard(f"sqlite:///{tmp_path / 'db.sqlite'}", sweep=False) as ward:
        assert ward.limits._direct is None
        assert ward.limits.hit("k", "2/minute").remaining == 1


def test_threads_lose_no_count() -> None:
    threads, each = 8, 3000
    with SyncWard("memory://", sweep=False) as ward:
        allowed = [0] * threads
        gate = threading.Barrier(threads)

        def worker(t: int) -> None:
            gate.wait()
            for i in range(each):
                allowed[t] += ward.limits.hit(f"k{i % 7}", "500/hour").allowed

        running = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        for thread in running:
            thread.start()
        for thread in running:
            thread.join(120)
        stats = ward.limits._inner.stats
        assert stats.decisions == threads * each
        assert sum(allowed) == 7 * 500 == stats.decisions - stats.refused


@pytest.mark.anyio
async def test_limiter_keys_share_the_lru_with_sessions() -> None:
    # a store of 3 entries: a session, then keys a and b; a hit on a makes the session the
    # least recently used, so a third key evicts it (a peek touches nothing)
    async with open_ward("memory://?max_entries=3", clock=FakeClock(), sweep=False) as ward:
        new = await ward.sessions.create("alice")
        await ward.limits.hit("a", "10/minute")
        await ward.limits.hit("b", "10/minute")
        await ward.limits.peek("fresh", "10/minute")
        await ward.limits.hit("a", "10/minute")
        assert len(ward.store) == 3  # type: ignore[arg-type]
        await ward.limits.hit("c", "10/minute")
        assert len(ward.store) == 3  # type: ignore[arg-type]
        with pytest.raises(UnknownSession):
            await ward.sessions.validate(new.token)
        assert (await ward.limits.peek("a", "10/minute", 0)).remaining == 8
        assert (await ward.limits.peek("b", "10/minute", 0)).remaining == 9


def test_the_direct_path_refuses_a_store_inherited_by_fork() -> None:
    store = create_store("memory://")
    assert isinstance(store, MemoryStore)
    assert store.gcra_one_now("k#0", 1.0, 10.0, 1)[0]
    message = in_fork(lambda inherited: inherited.gcra_one_now("k#0", 1.0, 10.0, 1), store)
    assert "cannot be shared across processes" in message
    assert store.gcra_one_now("k#0", 1.0, 10.0, 1)[0]  # the parent's store is still its own


@pytest.mark.parametrize("seed", range(4))
def test_the_bare_steps_decide_as_the_general_rule(seed: int) -> None:
    # gcra_one_now and gcra_keys_now restate gcra_candidate; whole seconds hit its boundaries
    # exactly (a candidate exactly `capacity` ahead, a TAT exactly now, a zero capacity, a
    # refund), and a cap of 5 entries evicts all the time
    rng = random.Random(seed)
    clock = FakeClock(1000.0)
    url = "memory://?max_entries=5"
    one, keys, general = _store(clock, url), _store(clock, url), _store(clock, url)
    for step in range(3000):
        clock.advance(rng.choice([0, 0, 1, 2, 0.5]))
        cost, apply = rng.choice([1, 1, 0, 2, -1, 0.5]), rng.random() < 0.8
        picked = rng.sample(["a", "b", "c", "d", "e", "f", "g"], rng.choice([1, 1, 2, 3]))
        params = [(rng.choice([0.0, 1.0, 2.0]), rng.choice([0.0, 1.0, 2.0, 3.0])) for _ in picked]
        checks = [
            GcraCheck(k, period, capacity, cost)
            for k, (period, capacity) in zip(picked, params, strict=True)
        ]
        theirs = general.gcra_now(checks, apply=apply)
        assert keys.gcra_keys_now(picked, params, cost, apply) == (
            theirs.allowed,
            theirs.tats,
            theirs.now,
        ), f"step {step}"
        if len(picked) == 1:
            answer = one.gcra_one_now(picked[0], *params[0], cost, apply)
            assert answer == (theirs.allowed[0], theirs.tats[0], theirs.now), f"step {step}"
        else:
            one.gcra_keys_now(picked, params, cost, apply)
        for store in (one, keys):
            assert store._limits == general._limits and list(store._lru) == list(general._lru)
