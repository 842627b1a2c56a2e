"""The Lua that restates a rule of ``sessionward.rules`` decides as the rule does.

Each table of inputs goes through the Python rule and through the Redis script (by the
store's public methods, on a real server, with a FakeClock so that ``now`` is known), and
the outcomes must be equal. The scripts name in their headers the function they mirror.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from importlib import resources
from itertools import count

import pytest

from sessionward import FakeClock
from sessionward.rules.budgets import charge_refusal
from sessionward.rules.limits import gcra_candidate
from sessionward.rules.state import version_matches
from sessionward.stores.protocols import Store
from sessionward.stores.records import ChargeRequest, GcraCheck, StateScope
from sessionward.testing.users import new_session

from .release_cases import RELEASE_CASES, check_release_mirrors_the_rule

pytestmark = pytest.mark.anyio
BACKEND = "redis"  # tests/stores/conftest.py: url, clock, store

#: The scripts that restate a rule, and the rule each names in its header.
MIRRORS = {
    "limits_gcra.lua": "sessionward.rules.limits.gcra_candidate",
    "budget_spend.lua": "sessionward.rules.budgets.charge_refusal",
    "budget_prelude.lua": "sessionward.rules.budgets.charge_refusal",
    "job_claim.lua": "sessionward.rules.jobs.fair_order",
    "job_reap.lua": "sessionward.rules.jobs.reap",
    "job_release.lua": "sessionward.rules.jobs.release",
    "prelude.lua": "sessionward.rules.state.version_matches",
}
_NAMED = re.compile(r"\b(sessionward\.rules\.\w+)\.(\w+)")


def test_every_restated_rule_is_named_in_its_script() -> None:
    lua = resources.files("sessionward.stores.redis") / "lua"
    for script, rule in MIRRORS.items():
        header = (lua / script).read_text("utf-8")
        assert f"Mirrors {rule}" in " ".join(header.split()), script
    for entry in lua.iterdir():
        for module, name in _NAMED.findall(entry.read_text("utf-8")):
            assert callable(getattr(importlib.import_module(module), name)), (entry.name, name)


#: Far more than any case needs: a setup step is always allowed.
ROOM = 1e9

# GCRA: how far the key's TAT is ahead of now (None: no key; negative: in the past), then the
# check's period, capacity and cost.
GCRA_CASES = [
    (None, 1.0, 10.0, 1.0),  # a first request
    (None, 1.0, 0.0, 1.0),  # no capacity
    (None, 0.5, 1.0, 3.0),  # one request costing more than the capacity
    (None, 1.0, 0.0, 0.0),  # a lock that is free
    (5.0, 1.0, 0.0, 0.0),  # a lock that is held
    (9.0, 1.0, 10.0, 1.0),  # exactly at capacity
    (9.5, 1.0, 10.0, 1.0),  # just past it
    (5.0, 2.0, 10.0, -1.0),  # a refund
    (1.0, 2.0, 10.0, -3.0),  # a refund past now: floored at now
    (-5.0, 1.0, 2.0, 2.0),  # a TAT in the past counts as now
    (-0.25, 0.25, 0.5, 2.0),  # the same, refused
    (30.0, 0.1, 30.0, 0.0),  # a zero cost at capacity
]


@pytest.mark.parametrize(("ahead", "period", "capacity", "cost"), GCRA_CASES)
@pytest.mark.parametrize("apply", [False, True], ids=["peek", "apply"])
async def test_gcra_step_mirrors_gcra_candidate(
    store: Store, clock: FakeClock, ahead: float | None, period: float, capacity: float,
    cost: float, apply: bool,
) -> None:  # fmt: skip
    key = "mirror"
    tat = None
    if ahead is not None:
        later = max(0.0, -ahead) + 1.0  # the TAT is set ahead of now, then now moves on
        setup = await store.gcra([GcraCheck(key, 1.0, ROOM, ahead + later)])
        assert setup.allowed == (True,)
        clock.advance(later)
        tat = setup.tats[0]
    check = GcraCheck(key, period, capacity, cost)
    result = await store.gcra([check], apply=apply)
    assert result.now == clock.now()
    assert (result.allowed[0], result.tats[0]) == gcra_candidate(check, tat, result.now)


@dataclass(frozen=True)
class ChargeCase:
    limit: int
    spent: int
    held: int
    cap: int | None  # the user's cap across its sessions
    elsewhere: int  # spent by the user's other session
    amount: int


BIG = 2**52  # the user's sums pass 2**53: the scripts keep them in two limbs
CHARGE_CASES = [
    ChargeCase(100, 0, 0, None, 0, 100),
    ChargeCase(100, 0, 0, None, 0, 101),
    ChargeCase(100, 60, 30, None, 0, 10),
    ChargeCase(100, 60, 30, None, 0, 11),
    ChargeCase(100, 0, 0, 50, 0, 50),
    ChargeCase(100, 0, 0, 50, 0, 51),
    ChargeCase(100, 10, 10, 100, 70, 10),
    ChargeCase(100, 10, 10, 100, 70, 11),
    ChargeCase(10, 0, 0, 5, 0, 11),  # the session's refusal comes first
    ChargeCase(100, 0, 0, 0, 0, 1),
    ChargeCase(2 * BIG, 0, 0, 2 * BIG, BIG, BIG),
    ChargeCase(2 * BIG, 0, 0, 2 * BIG, BIG, BIG + 1),
]
_ids = count()


def _request(user: str, session: str, amount: int, *, hold: bool = False) -> ChargeRequest:
    entry = f"e{next(_ids)}"
    return ChargeRequest(user, session, amount, entry, None, "", 0, "EUR", 60.0 if hold else 0.0)


@pytest.mark.parametrize("case", CHARGE_CASES, ids=repr)
async def test_charge_refusal_mirrors_charge_refusal(store: Store, case: ChargeCase) -> None:
    user = "payer"
    mine = (await new_session(store, user, "t-mine")).session_id
    other = (await new_session(store, user, "t-other")).session_id
    await store.set_budget(user, mine, limit=case.limit, currency="EUR")
    await store.set_budget(user, other, limit=max(case.elsewhere, 1), currency="EUR")
    for session, amount, hold in ((mine, case.spent, False), (mine, case.held, True),
                                  (other, case.elsewhere, False)):  # fmt: skip
        if amount:
            spend = store.reserve if hold else store.charge
            assert (await spend(_request(user, session, amount, hold=hold))).status in (
                "charged", "held",
            )  # fmt: skip
    if case.cap is not None:
        await store.set_user_budget(user, case.cap)
    budget = await store.get_budget(user, mine, default_limit=0, currency="EUR")
    user_budget = await store.get_user_budget(user)
    assert (budget.spent, budget.held) == (case.spent, case.held)
    expected = charge_refusal(budget, user_budget, case.amount) or "charged"
    outcome = await store.charge(_request(user, mine, case.amount))
    assert outcome.status == expected


# state: the version stored (None: no document), then the version expected (None: any).
VERSION_CASES = [(None, None), (None, 0), (None, 1), (1, None), (1, 0), (1, 1), (2, 1), (2, 2)]


@pytest.mark.parametrize(("current", "expected"), VERSION_CASES)
@pytest.mark.parametrize("op", ["put", "delete"])
async def test_state_cas_mirrors_version_matches(
    store: Store, current: int | None, expected: int | None, op: str
) -> None:
    scope = StateScope("user", "writer", None)
    for _ in range(current or 0):
        assert (await store.put_state(scope, "doc", "x", expected_version=None)).applied
    if op == "put":
        write = await store.put_state(scope, "doc", "y", expected_version=expected)
        assert write.applied == version_matches(current, expected)
    else:
        write = await store.delete_state(scope, "doc", expected_version=expected)
        assert write.applied == (current is not None and version_matches(current, expected))


@pytest.mark.parametrize(("max_attempts", "reaped", "cancelled", "progress"), RELEASE_CASES)
async def test_release_mirrors_the_release_rule(
    store: Store, clock: FakeClock, max_attempts: int, reaped: int, cancelled: bool,
    progress: float,
) -> None:  # fmt: skip
    await check_release_mirrors_the_rule(store, clock, max_attempts, reaped, cancelled, progress)
