"""Budget conformance: charges, idempotency, refunds, holds, user caps, and the races."""

from __future__ import annotations

import contextlib
import random
import threading
from functools import partial

import anyio
import pytest

from ..budgets import Charge
from ..clock import FakeClock
from ..config import Settings
from ..errors import (
    AlreadyRefunded,
    BudgetExceeded,
    IdempotencyMismatch,
    InvalidArgument,
    SessionRevoked,
    UnknownCharge,
)
from ..sessions import Session
from ..sync import SyncWard
from ..ward import Ward, open_ward
from .conformance import IDLE, WardFixtures
from .races import race, run_in_processes

LIMIT = 10_000
STORM = 500


class BudgetFixtures(WardFixtures):
    @pytest.fixture
    def settings(self) -> Settings:
        return Settings(budget_default=LIMIT, budget_hold_ttl=60, sweep_batch_size=100,
                        sessions_per_user=100)  # fmt: skip

    @staticmethod
    async def session(ward: Ward, user: str = "payer") -> Session:
        return (await ward.sessions.create(user)).session


class BudgetConformance(BudgetFixtures):
    async def test_a_session_starts_with_the_default(self, ward: Ward) -> None:
        budget = await ward.budgets.get(await self.session(ward))
        assert (budget.limit, budget.spent, budget.held, budget.remaining) == (LIMIT, 0, 0, LIMIT)
        assert budget.currency == "USD" and budget.user_limit is None

    async def test_charges_and_the_ledger(self, ward: Ward, clock: FakeClock) -> None:
        session = await self.session(ward)
        first = await ward.budgets.charge(session, 300, "k1", "panel")
        clock.advance(1)
        second = await ward.budgets.charge(session, 200, "k2")
        assert (second.spent, second.remaining, second.replayed) == (500, LIMIT - 500, False)
        ledger = await ward.budgets.charges(session)
        assert [(e.entry_id, e.amount, e.description) for e in ledger] == [
            (first.charge_id, 300, "panel"), (second.charge_id, 200, ""),
        ]  # fmt: skip
        assert ledger[0].created_at == clock.now() - 1
        assert await ward.budgets.charges(session, after=first.charge_id) == ledger[1:]
        assert await ward.budgets.charges(session, limit=1) == ledger[:1]

    async def test_the_limit_is_exact(self, ward: Ward) -> None:
        session = await self.session(ward)
        await ward.budgets.charge(session, LIMIT - 1, "a")
        with pytest.raises(BudgetExceeded) as refused:
            await ward.budgets.charge(session, 2, "b")
        assert refused.value.remaining == 1
        assert (await ward.budgets.charge(session, 1, "c")).remaining == 0
        assert [e.amount for e in await ward.budgets.charges(session)] == [LIMIT - 1, 1]

    async def test_idempotency(self, ward: Ward) -> None:
        session = await self.session(ward)
        first = await ward.budgets.charge(session, 250, "order-17")
        again = await ward.budgets.charge(session, 250, "order-17", "described differently")
        assert again.replayed and again.charge_id == first.charge_id and again.spent == 250
        with pytest.raises(IdempotencyMismatch):
            await ward.budgets.charge(session, 251, "order-17")
        other = await self.session(ward, "someone")
        assert not (await ward.budgets.charge(other, 250, "order-17")).replayed  # per session
        assert len(await ward.budgets.charges(session)) == 1

    async def test_refund_once(self, ward: Ward) -> None:
        session = await self.session(ward)
        charge = await ward.budgets.charge(session, 400, "k")
        refund = await ward.budgets.refund(session, charge.charge_id)
        assert (refund.amount, refund.spent, refund.remaining) == (-400, 0, LIMIT)
        assert refund.entry.refund_of == charge.charge_id
        with pytest.raises(AlreadyRefunded):
            await ward.budgets.refund(session, charge.charge_id)
        with pytest.raises(AlreadyRefunded):
            await ward.budgets.refund(session, refund.charge_id)
        with pytest.raises(UnknownCharge):
            await ward.budgets.refund(session, "nope")
        thief = await self.session(ward, "thief")
        other = await ward.budgets.charge(session, 10, "k2")
        with pytest.raises(UnknownCharge):
            await ward.budgets.refund(thief, other.charge_id)
        assert [e.amount for e in await ward.budgets.charges(session)] == [400, -400, 10]

    async def test_holds(self, ward: Ward, clock: FakeClock) -> None:
        session = await self.session(ward)
        hold = await ward.budgets.reserve(session, 6000)
        assert hold.remaining == LIMIT - 6000
        with pytest.raises(BudgetExceeded):
            await ward.budgets.charge(session, 5000, "k")
        with pytest.raises(InvalidArgument):
            await ward.budgets.capture(session, hold.hold_id, 6001)
        charge = await ward.budgets.capture(session, hold.hold_id, 2500, "scan")
        assert charge is not None and (charge.spent, charge.remaining) == (2500, LIMIT - 2500)
        with pytest.raises(UnknownCharge):
            await ward.budgets.capture(session, hold.hold_id, 1)
        released = await ward.budgets.reserve(session, 100)
        await ward.budgets.release(session, released.hold_id)
        nothing = await ward.budgets.reserve(session, 100)
        assert await ward.budgets.capture(session, nothing.hold_id, 0) is None
        budget = await ward.budgets.get(session)
        assert (budget.spent, budget.held) == (2500, 0)

    async def test_holds_expire(self, ward: Ward, clock: FakeClock) -> None:
        session = await self.session(ward)
        hold = await ward.budgets.reserve(session, LIMIT)
        clock.advance(59)
        assert (await ward.budgets.get(session)).held == LIMIT
        clock.advance(1)
        assert await ward.budgets.sweep() in (0, 1)
        assert (await ward.budgets.get(session)).held == 0
        with pytest.raises(UnknownCharge):
            await ward.budgets.capture(session, hold.hold_id, 1)
        await ward.budgets.charge(session, LIMIT, "all of it")

    async def test_a_user_limit_caps_all_sessions(self, ward: Ward) -> None:
        one, two = await self.session(ward, "family"), await self.session(ward, "family")
        await ward.budgets.set_user_limit("family", 1000)
        await ward.budgets.charge(one, 600, "a")
        with pytest.raises(BudgetExceeded) as refused:
            await ward.budgets.charge(two, 500, "b")
        assert (refused.value.scope, refused.value.remaining) == ("user", 400)
        await ward.budgets.reserve(two, 400)
        budget = await ward.budgets.get(two)
        assert (budget.user_limit, budget.user_remaining, budget.remaining) == (
            1000,
            0,
            LIMIT - 400,
        )
        with pytest.raises(InvalidArgument):
            await ward.budgets.set_user_limit("family", 999)
        await ward.budgets.set_user_limit("family", None)
        await ward.budgets.charge(two, 500, "b")

    async def test_set_limit(self, ward: Ward) -> None:
        session = await self.session(ward)
        await ward.budgets.charge(session, 300, "k")
        assert (await ward.budgets.set_limit(session, 400)).remaining == 100
        with pytest.raises(InvalidArgument):
            await ward.budgets.set_limit(session, 299)
        with pytest.raises(BudgetExceeded):
            await ward.budgets.charge(session, 101, "k2")

    async def test_a_revoked_session_cannot_spend(self, ward: Ward, clock: FakeClock) -> None:
        session = await self.session(ward)
        await ward.budgets.charge(session, 10, "k")
        await ward.sessions.revoke(session.user_id, session.session_id)
        with pytest.raises(SessionRevoked):
            await ward.budgets.charge(session, 10, "k2")
        with pytest.raises(SessionRevoked):
            await ward.budgets.reserve(session, 10)
        clock.advance(IDLE)
        await ward.sessions.sweep()
        assert await ward.budgets.charges(session) == []
        assert await ward.budgets.verify() == []

    @pytest.mark.parametrize("amount", [0, -5, 1.5, 10.0, True, "10", 2**53 + 1, None])
    async def test_bad_amounts(self, ward: Ward, amount: object) -> None:
        session = await self.session(ward)
        with pytest.raises(InvalidArgument):
            await ward.budgets.charge(session, amount, "k")  # type: ignore[arg-type]
        assert await ward.budgets.charges(session) == []

    @pytest.mark.parametrize(("key", "description"), [("", ""), ("k" * 256, ""), ("k", "d" * 501),
                                                     ("a\nb", ""), (None, "")])  # fmt: skip
    async def test_bad_keys_and_descriptions(
        self, ward: Ward, key: object, description: str
    ) -> None:
        session = await self.session(ward)
        with pytest.raises(InvalidArgument):
            await ward.budgets.charge(session, 1, key, description)  # type: ignore[arg-type]

    async def test_the_books_balance(self, ward: Ward) -> None:
        sessions = [await self.session(ward, f"u{n % 3}") for n in range(6)]
        await ward.budgets.set_user_limit("u1", 5000)
        for n in range(60):
            session = sessions[n % 6]
            try:
                charge = await ward.budgets.charge(session, 37 * n + 1, f"k{n}")
                if n % 5 == 0:
                    await ward.budgets.refund(session, charge.charge_id)
            except BudgetExceeded:
                pass
        assert await ward.budgets.verify() == []


class BudgetRaceConformance(BudgetFixtures):
    async def test_a_charge_storm_never_overspends(self, ward: Ward) -> None:
        session = await self.session(ward)
        amounts = [random.Random(n).randint(1, 80) for n in range(STORM)]
        outcomes = await race(
            [
                partial(ward.budgets.charge, session, amount, f"k{n}")
                for n, amount in enumerate(amounts)
            ]
        )
        accepted = [o for o in outcomes if isinstance(o, Charge)]
        rejected = [o for o in outcomes if isinstance(o, BudgetExceeded)]
        assert len(accepted) + len(rejected) == STORM
        budget = await ward.budgets.get(session)
        assert budget.spent == sum(c.amount for c in accepted) <= LIMIT
        assert budget.spent > LIMIT - 80  # it was filled, not refused wholesale
        assert (
            sum(e.amount for e in await ward.budgets.charges(session, limit=1000)) == budget.spent
        )
        assert await ward.budgets.verify() == []

    async def test_one_key_fifty_times_at_once(self, ward: Ward) -> None:
        session = await self.session(ward)
        outcomes = await race([partial(ward.budgets.charge, session, 75, "same")] * 50)
        assert all(isinstance(o, Charge) for o in outcomes)
        assert len({(o.charge_id, o.amount, o.spent) for o in outcomes}) == 1
        assert len(await ward.budgets.charges(session)) == 1
        assert (await ward.budgets.get(session)).spent == 75

    def test_a_charge_storm_from_threads(self, store_url: str, clock: FakeClock) -> None:
        settings = Settings(budget_default=LIMIT)
        with SyncWard(store_url, settings=settings, clock=clock, sweep=False) as ward:
            session = ward.sessions.create("payer").session
            spent = [0] * 16
            barrier = threading.Barrier(16)

            def storm(t: int) -> None:
                barrier.wait()
                for n in range(STORM // 16):
                    with contextlib.suppress(BudgetExceeded):
                        amount = 1 + (n * 7 + t) % 60
                        spent[t] += ward.budgets.charge(session, amount, f"{t}-{n}").amount

            threads = [threading.Thread(target=storm, args=(t,)) for t in range(16)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            assert ward.budgets.get(session).spent == sum(spent) <= LIMIT
            assert ward.budgets.verify() == []


class BudgetProcessConformance:
    """The storm again from four OS processes on one shared store."""

    pytestmark = pytest.mark.anyio

    async def test_a_charge_storm_from_four_processes(self, store_url: str) -> None:
        async with open_ward(
            store_url, settings=Settings(budget_default=LIMIT), sweep=False
        ) as ward:
            session = (await ward.sessions.create("payer")).session
            children = [(_storm_child, (store_url, session.user_id, session.session_id, p))
                        for p in range(4)]  # fmt: skip
            spent = await run_in_processes(children)
            budget = await ward.budgets.get(session)
            assert budget.spent == sum(spent) <= LIMIT
            assert budget.spent > LIMIT - 80
            assert await ward.budgets.verify() == []


async def _storm_child(url: str, user_id: str, session_id: str, p: int, barrier: object) -> int:
    async with open_ward(url, settings=Settings(budget_default=LIMIT), sweep=False) as ward:
        session = await ward.sessions.get(user_id, session_id)
        await anyio.to_thread.run_sync(barrier.wait)  # type: ignore[attr-defined]
        calls = [partial(ward.budgets.charge, session, 1 + (n * 13 + p) % 80, f"{p}-{n}")
                 for n in range(STORM // 4)]  # fmt: skip
        outcomes = await race(calls)
    return sum(o.amount for o in outcomes if isinstance(o, Charge))
