"""Store conformance for GCRA rate limits (the protocol level)."""

from __future__ import annotations

from functools import partial

from ..clock import FakeClock
from ..stores.records import GcraCheck
from ..ward import Ward
from .conformance import WardFixtures
from .races import race


class LimitConformance(WardFixtures):
    async def test_burst_then_one_per_period(self, ward: Ward, clock: FakeClock) -> None:
        check = GcraCheck("k", period=2.0, capacity=10.0, cost=1)  # 5 at once, then 1 per 2 s
        results = [await ward.store.gcra([check]) for _ in range(6)]
        assert [r.allowed[0] for r in results] == [True] * 5 + [False]
        assert [r.tats[0] - clock.now() for r in results] == [2, 4, 6, 8, 10, 12]
        clock.advance(1.999)
        assert not (await ward.store.gcra([check])).allowed[0]
        clock.advance(0.001)
        assert (await ward.store.gcra([check])).allowed[0]

    async def test_cost_above_capacity_is_never_allowed(self, ward: Ward) -> None:
        check = GcraCheck("k", period=1.0, capacity=5.0, cost=6)
        assert not (await ward.store.gcra([check])).allowed[0]
        fresh = GcraCheck("k", period=1.0, capacity=5.0, cost=5)
        assert (await ward.store.gcra([fresh])).allowed[0]

    async def test_peek_and_refund(self, ward: Ward, clock: FakeClock) -> None:
        check = GcraCheck("k", period=1.0, capacity=3.0, cost=1)
        for _ in range(3):
            await ward.store.gcra([check])
        peek = await ward.store.gcra([check], apply=False)
        assert peek.allowed == (False,) and peek.tats[0] == clock.now() + 4
        zero = await ward.store.gcra([GcraCheck("k", 1.0, 3.0, 0)])
        assert zero.allowed == (True,) and zero.tats[0] == clock.now() + 3
        refund = await ward.store.gcra([GcraCheck("k", 1.0, 3.0, -1)])
        assert refund.tats[0] == clock.now() + 2
        assert (await ward.store.gcra([check])).allowed[0]
        big_refund = await ward.store.gcra([GcraCheck("k", 1.0, 3.0, -100)])
        assert big_refund.tats[0] == clock.now()

    async def test_a_zero_capacity_key_is_a_lock(self, ward: Ward, clock: FakeClock) -> None:
        lock = GcraCheck("lock", period=1.0, capacity=0.0, cost=0)
        assert (await ward.store.gcra([lock])).allowed == (True,)
        await ward.store.gcra([GcraCheck("lock", period=1.0, capacity=30.0, cost=30)])
        held = await ward.store.gcra([lock])
        assert held.allowed == (False,) and held.tats[0] == clock.now() + 30
        clock.advance(30)
        assert (await ward.store.gcra([lock])).allowed == (True,)

    async def test_checks_are_all_or_none(self, ward: Ward, clock: FakeClock) -> None:
        roomy = GcraCheck("a", period=1.0, capacity=100.0, cost=1)
        full = GcraCheck("b", period=1.0, capacity=1.0, cost=1)
        assert (await ward.store.gcra([roomy, full])).allowed == (True, True)
        denied = await ward.store.gcra([roomy, full])
        assert denied.allowed == (True, False)
        after = await ward.store.gcra([roomy], apply=False)
        assert after.tats[0] == clock.now() + 2  # the denied decision consumed nothing

    async def test_reset_and_isolation(self, ward: Ward) -> None:
        a, b = GcraCheck("user:{a}", 1.0, 1.0, 1), GcraCheck("user:{b}", 1.0, 1.0, 1)
        await ward.store.gcra([a])
        assert not (await ward.store.gcra([a])).allowed[0]
        assert (await ward.store.gcra([b])).allowed[0]
        await ward.store.reset_limits([a.key, "never-used"])
        assert (await ward.store.gcra([a])).allowed[0]

    async def test_passed_keys_are_swept(self, ward: Ward, clock: FakeClock) -> None:
        for n in range(5):
            await ward.store.gcra([GcraCheck(f"k{n}", 1.0, 10.0, 1)])
        clock.advance(1)
        swept = await ward.store.sweep_limits(100)
        assert swept in (0, 5)  # 0: the store leaves it to the server's TTLs (Redis)
        assert (await ward.store.gcra([GcraCheck("k0", 1.0, 1.0, 1)])).allowed[0]

    async def test_exact_under_concurrency(self, ward: Ward) -> None:
        check = GcraCheck("hot", period=60.0, capacity=50 * 60.0, cost=1)  # 50 per hour
        outcomes = await race([partial(ward.store.gcra, [check])] * 200)
        assert sum(o.allowed[0] for o in outcomes) == 50
