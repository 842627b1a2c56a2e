"""The SQL that restates a rule of ``sessionward.rules`` decides as the Python rule does.

``sw_gcra`` (``sql/schema.sql``) restates ``rules.limits.gcra_candidate``, ``sw_spend``
(``sql/budgets.sql``) ``rules.budgets.charge_refusal`` and ``sw_pick_jobs``
(``sql/jobs.sql``) ``rules.jobs.fair_order`` and ``sw_release_jobs`` (``sql/jobs_release.sql``)
``rules.jobs.release``. One table of inputs goes
through the Python rule and through the store's public methods on the real server; the
outcomes must be equal. A change to either side that the other lacks fails here.
"""

from __future__ import annotations

import random

import pytest

from sessionward.clock import FakeClock
from sessionward.rules.budgets import charge_refusal
from sessionward.rules.jobs import fair_order
from sessionward.rules.limits import gcra_candidate
from sessionward.stores.protocols import Store
from sessionward.stores.records import (
    BudgetRow,
    ChargeRequest,
    GcraCheck,
    JobLimits,
    JobRow,
    NewJob,
    NewSessionRow,
    UserBudgetRow,
)

from .release_cases import RELEASE_CASES, check_release_mirrors_the_rule

pytestmark = pytest.mark.anyio
BACKEND = "postgresql"  # tests/stores/conftest.py: url, clock, store
NOW = 1_700_000_100.0
SEEDED = NOW - 20.0  # when the stored TATs are stepped to, before every one of them
BIG = 10**9


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(SEEDED)


# (stored TAT relative to now, or None: no row), period, capacity, cost
GCRA_CASES = [
    (None, 1.0, 0.0, 1.0),
    (None, 1.0, 5.0, 1.0),
    (None, 2.0, 4.0, 2.0),
    (None, 0.5, 1.25, 3.0),
    (3.0, 1.0, 4.0, 1.0),
    (3.0, 1.0, 3.5, 1.0),
    (-10.0, 1.0, 0.0, 1.0),
    (-10.0, 1.0, 1.0, 1.0),
    (0.0, 1.0, 0.0, 0.0),
    (1.0, 1.0, 0.0, 0.0),
    (5.0, 1.0, 0.0, -3.0),
    (2.0, 1.0, 0.0, -5.0),
]


@pytest.mark.parametrize(("offset", "period", "capacity", "cost"), GCRA_CASES)
async def test_sw_gcra_steps_as_gcra_candidate(
    store: Store, clock: FakeClock, offset: float | None, period: float, capacity: float,
    cost: float,
) -> None:  # fmt: skip
    tat = None if offset is None else NOW + offset
    if tat is not None:  # stored by a step taken before it: max(t, t) + (tat - t) * 1
        clock.set(SEEDED)
        seed = GcraCheck("k", 1.0, BIG, tat - SEEDED)
        assert (await store.gcra([seed])).tats == (tat,)
    clock.set(NOW)
    check = GcraCheck("k", period, capacity, cost)
    allowed, candidate = gcra_candidate(check, tat, NOW)

    peek = await store.gcra([check], apply=False)
    decision = await store.gcra([check])

    assert (peek.allowed, peek.tats) == ((allowed,), (candidate,))
    assert (decision.allowed, decision.tats) == ((allowed,), (candidate,))
    stored = candidate if allowed else tat
    after = await store.gcra([GcraCheck("k", 1.0, BIG, 0.0)], apply=False)
    assert after.tats == (gcra_candidate(GcraCheck("k", 1.0, BIG, 0.0), stored, NOW)[1],)


# budget limit, spent, held, user limit (None: no cap), the user's other session's spent,
# amount
CHARGE_CASES = [
    (100, 0, 0, None, 0, 100),
    (100, 0, 0, None, 0, 101),
    (100, 60, 30, None, 0, 10),
    (100, 60, 30, None, 0, 11),
    (100, 0, 0, 50, 20, 30),
    (100, 0, 0, 50, 20, 31),
    (100, 10, 10, 50, 20, 11),
    (40, 30, 0, 85, 50, 11),
    (100, 0, 0, 0, 0, 1),
]


def _request(session_id: str, amount: int, entry_id: str) -> ChargeRequest:
    return ChargeRequest("alice", session_id, amount, entry_id, None, "", BIG, "USD", 60.0)


async def _set_up(store: Store, limit: int, spent: int, held: int, cap: int | None,
                  other: int) -> None:  # fmt: skip
    for sid in ("sid-main", "sid-other"):
        new = NewSessionRow(sid, "alice", f"hash-{sid}", 1800.0, 43200.0, None, None, "{}")
        await store.create_session(new, max_sessions=10, evict_oldest=False)
    assert await store.set_budget("alice", "sid-main", limit=limit, currency="USD") is not None
    assert await store.set_budget("alice", "sid-other", limit=BIG, currency="USD") is not None
    if cap is not None:
        assert await store.set_user_budget("alice", cap) is not None
    steps = [(store.charge, "sid-main", spent, "charged"),
             (store.reserve, "sid-main", held, "held"),
             (store.charge, "sid-other", other, "charged")]  # fmt: skip
    for n, (step, sid, amount, status) in enumerate(steps):
        if amount:
            assert (await step(_request(sid, amount, f"setup-{n}"))).status == status


@pytest.mark.parametrize(("limit", "spent", "held", "cap", "other", "amount"), CHARGE_CASES)
async def test_sw_spend_refuses_as_charge_refusal(
    store: Store, limit: int, spent: int, held: int, cap: int | None, other: int, amount: int
) -> None:
    await _set_up(store, limit, spent, held, cap, other)
    budget = BudgetRow("alice", "sid-main", limit, spent, held, "USD")
    user = None if cap is None else UserBudgetRow("alice", cap, spent + other, held)
    assert await store.get_budget("alice", "sid-main", default_limit=BIG, currency="USD") == budget
    assert await store.get_user_budget("alice") == user

    outcome = await store.charge(_request("sid-main", amount, "the-charge"))

    assert outcome.status == (charge_refusal(budget, user, amount) or "charged")


# (per-user limit, overall limit, seed of the rounds of submits, claims and finishes)
CLAIM_CASES = [(1, 3, 1), (2, 4, 2), (3, 5, 3), (1, 10, 4), (2, 2, 5)]
USERS = ("ann", "bob", "cy", "dee")


async def _stored_jobs(store: Store) -> list[JobRow]:
    jobs = [job for user in USERS for job in await store.list_jobs(user, limit=1000)]
    return sorted(jobs, key=lambda job: job.seq)


def _predicted(jobs: list[JobRow], limits: JobLimits, want: int) -> list[str]:
    running = [job for job in jobs if job.status in ("running", "cancelling")]
    by_user: dict[str, int] = {}
    for job in running:
        by_user[job.user_id] = by_user.get(job.user_id, 0) + 1
    served: dict[str, float] = {}
    for job in jobs:
        if job.started_at is not None:
            served[job.user_id] = max(served.get(job.user_id, job.started_at), job.started_at)
    queued = [job for job in jobs if job.status in ("queued", "interrupted")]
    picked = fair_order(queued, by_user, len(running), limits, want, served)
    return [job.job_id for job in picked]


@pytest.mark.parametrize(("per_user", "overall", "seed"), CLAIM_CASES)
async def test_sw_pick_jobs_claims_in_fair_order(
    store: Store, clock: FakeClock, per_user: int, overall: int, seed: int
) -> None:
    rng = random.Random(seed)
    limits = JobLimits(per_user, overall)
    for round_ in range(8):
        for n in range(rng.randrange(4)):
            new = NewJob(f"j-{round_}-{n}", rng.choice(USERS), "k", "{}", 1)
            assert await store.submit_job(new, max_queued=100) is not None
        jobs = await _stored_jobs(store)
        for job in jobs:
            if job.status == "running" and rng.random() < 0.4:
                assert await store.finish_job(job.job_id, "w", "succeeded", None, None)
        want = rng.randrange(1, 4)
        expected = _predicted(await _stored_jobs(store), limits, want)

        claimed = await store.claim_jobs("w", want=want, limits=limits, lease=3600.0)

        assert [job.job_id for job in claimed] == expected
        clock.advance(1.0)


@pytest.mark.parametrize(("max_attempts", "reaped", "cancelled", "progress"), RELEASE_CASES)
async def test_release_mirrors_the_release_rule(
    store: Store, clock: FakeClock, max_attempts: int, reaped: int, cancelled: bool,
    progress: float,
) -> None:  # fmt: skip
    await check_release_mirrors_the_rule(store, clock, max_attempts, reaped, cancelled, progress)
