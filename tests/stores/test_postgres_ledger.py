"""PostgreSQL budgets, ledgers and holds, against the real server: the backstops, the locks,
round trips, crashes, and agreement with the SQLite reference.

The shared behaviour is proven by the conformance suite (``TestBudgets`` and friends);
these tests cover what only this store has.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import random
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from psycopg import errors

from sessionward.clock import FakeClock
from sessionward.errors import StorageUnavailable
from sessionward.stores import create_store
from sessionward.stores.postgres.schema import LATEST, migrate
from sessionward.stores.protocols import Store
from sessionward.stores.records import ById, ChargeRequest, LedgerEntry, NewSessionRow
from sessionward.testing.races import run_in_processes
from tests.conftest import url_for
from tests.stores.test_postgres_store import (
    SERVER,
    _commits,
    _kill_at_next_commit,
    _rows,
    _schema,
    _traced,
    _until,
    _until_blocked,
)

pytestmark = pytest.mark.anyio
BACKEND = "postgresql"  # tests/stores/conftest.py: url, clock, store, raw
BIG = 10**9
_SPAWN = multiprocessing.get_context("spawn")


def _new(n: int = 0, user: str = "alice") -> NewSessionRow:
    return NewSessionRow(f"sid-{n}", user, f"hash-{n}", 1800.0, 43200.0, None, None, "{}")


def _charge(amount: int, key: str | None, n: int = 0, user: str = "alice",
            limit: int = 1000, entry: str | None = None) -> ChargeRequest:  # fmt: skip
    entry_id = entry or f"e-{uuid.uuid4().hex[:12]}"
    return ChargeRequest(user, f"sid-{n}", amount, entry_id, key, "", limit, "USD", 60.0)


def _sql(url: str, statement: str) -> None:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(statement.replace("S.", f'"{_schema(url)}".'))


@pytest.fixture
async def store(url: str, clock: FakeClock) -> AsyncIterator[Store]:
    store = create_store(url, clock=clock)
    await store.open()
    await store.create_session(_new(), max_sessions=100, evict_oldest=False)
    try:
        yield store
    finally:
        await store.aclose()


async def _ledger(store: Store, user: str = "alice", sid: str = "sid-0") -> list[LedgerEntry]:
    entries: list[LedgerEntry] = []
    while page := await store.list_charges(user, sid, after=entries[-1].entry_id if entries
                                           else None, limit=1000):  # fmt: skip
        entries += page
    return entries


# backstops


async def test_the_check_rejects_an_overspend_behind_the_stores_back(
    store: Store, url: str
) -> None:
    assert (await store.charge(_charge(900, "k"))).status == "charged"
    for change in ["spent = budget_limit + 1", "held = budget_limit - spent + 1", "spent = -1",
                   "held = -1", "budget_limit = spent - 1"]:  # fmt: skip
        with pytest.raises(errors.CheckViolation):
            _sql(url, f"UPDATE S.sw_budgets SET {change}")
    with pytest.raises(errors.CheckViolation):  # a charge is positive, a refund negative
        _sql(
            url,
            "INSERT INTO S.sw_ledger (entry_id, user_id, session_id, kind, amount, "
            "description, created_at) VALUES ('x', 'alice', 'sid-0', 'charge', -5, '', 0)",
        )
    budget = await store.get_budget("alice", "sid-0", default_limit=1000, currency="USD")
    assert (budget.spent, budget.held) == (900, 0)
    assert await store.verify_ledger() == []


async def test_the_unique_indexes_reject_duplicate_rows(store: Store, url: str) -> None:
    first = await store.charge(_charge(5, "key"))
    assert first.entry is not None
    await store.charge(_charge(5, None))
    await store.charge(_charge(5, None))  # keys are unique only where there is one
    line = ("INSERT INTO S.sw_ledger (entry_id, user_id, session_id, kind, amount, "
            "idempotency_key, description, created_at, refund_of) VALUES ")  # fmt: skip
    with pytest.raises(errors.UniqueViolation):
        _sql(url, line + "('dup', 'alice', 'sid-0', 'charge', 5, 'key', '', 0, NULL)")
    with pytest.raises(errors.UniqueViolation):
        _sql(url, line + f"('{first.entry.entry_id}', 'alice', 'sid-0', 'charge', 5, NULL, '', 0, "
                         "NULL)")  # fmt: skip
    await store.refund("alice", "sid-0", first.entry.entry_id, "r1")
    with pytest.raises(errors.UniqueViolation):
        _sql(url, line + f"('r2', 'alice', 'sid-0', 'refund', -5, NULL, '', 0, "
                         f"'{first.entry.entry_id}')")  # fmt: skip
    assert [e.amount for e in await _ledger(store)] == [5, 5, 5, -5]


async def test_the_key_index_decides_a_replay_even_past_the_locks(store: Store, url: str) -> None:
    """A rival that wrote a line with the key without taking the budget's lock (as no code
    does): the charge waits on the index for it, then replays its line instead of failing."""
    await store.charge(_charge(1, "warm"))
    outcome: list[Any] = []

    async with await psycopg.AsyncConnection.connect(SERVER) as rival:
        await rival.execute(
            f'INSERT INTO "{_schema(url)}".sw_ledger (entry_id, user_id, session_id, kind, '
            "amount, idempotency_key, description, created_at) VALUES "
            "('rival', 'alice', 'sid-0', 'charge', 7, 'same', 'r', 0)"
        )
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_append, outcome, store.charge(_charge(7, "same")))
            await _until_blocked(_schema(url), "sw_spend")
            await rival.commit()
    done = outcome[0]
    assert (done.status, done.entry.entry_id, done.budget.spent) == ("replayed", "rival", 1)


async def _append(into: list[Any], call: Awaitable[Any]) -> None:
    into.append(await call)


async def test_amounts_up_to_2_53_are_exact(store: Store) -> None:
    top = 2**53
    done = await store.charge(_charge(top - 1, "a", limit=top))
    assert done.budget is not None and done.budget.spent == top - 1
    assert (await store.charge(_charge(2, "b", limit=top))).status == "exceeded"
    assert (await store.charge(_charge(1, "c", limit=top))).budget.spent == top  # type: ignore[union-attr]
    assert await store.set_user_budget("alice", top) is not None
    assert sum(e.amount for e in await _ledger(store)) == top


# locks


async def test_same_key_from_two_pools_charges_once(url: str, clock: FakeClock) -> None:
    stores = [create_store(url, clock=clock) for _ in range(2)]
    for one in stores:
        await one.open()
    try:
        await stores[0].create_session(_new(), max_sessions=3, evict_oldest=False)
        calls = [partial(stores[n % 2].charge, _charge(40, "once")) for n in range(30)]
        async with anyio.create_task_group() as tasks:
            outcomes: list[Any] = []
            for call in calls:
                tasks.start_soon(_append, outcomes, call())
        assert sorted(o.status for o in outcomes) == ["charged"] + ["replayed"] * 29
        assert len({o.entry.entry_id for o in outcomes}) == 1
        assert [e.amount for e in await _ledger(stores[0])] == [40]
    finally:
        for one in stores:
            await one.aclose()


async def _capped_child(url: str, user: str, sid: str, p: int, barrier: Any) -> tuple[int, int]:
    """Eight workers charging one session of the user; returns (charged, user refusals)."""
    store = create_store(url, clock=FakeClock())
    await store.open()
    charged, refused = 0, 0

    async def worker(w: int) -> None:
        nonlocal charged, refused
        for n in range(40):
            request = ChargeRequest(user, sid, 1 + (n * 13 + w + p) % 60, f"{p}-{w}-{n}",
                                    f"k{w}-{n}", "", BIG, "USD")  # fmt: skip
            done = await store.charge(request)
            assert done.status in ("charged", "user_exceeded"), done.status
            if done.status == "charged":
                charged += request.amount
            else:
                refused += 1

    try:
        await anyio.to_thread.run_sync(barrier.wait)
        async with anyio.create_task_group() as tasks:
            for w in range(8):
                tasks.start_soon(worker, w)
    finally:
        await store.aclose()
    return charged, refused


async def test_four_processes_and_a_moving_user_cap_stay_exact(url: str, clock: FakeClock) -> None:
    """While four processes storm the user's four sessions, the cap is set (just above the
    total, so it binds at once), watched until filled, and lifted, again and again."""
    store = create_store(url, clock=clock)
    await store.open()
    try:
        for n in range(4):
            await store.create_session(_new(n, "family"), max_sessions=4, evict_oldest=False)
        children = [(_capped_child, (url, "family", f"sid-{p}", p)) for p in range(4)]
        results: list[Any] = []
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_append, results, run_in_processes(children))
            caps = await _move_the_cap(store, lambda: bool(results))
        spent = sum(charged for charged, _ in results[0])
        assert caps >= 2 and sum(refused for _, refused in results[0]) > 0
        total = await store.set_user_budget("family", BIG)
        assert total is not None and (total.spent, total.held) == (spent, 0)
        ledgers = [await _ledger(store, "family", f"sid-{n}") for n in range(4)]
        assert sum(e.amount for ledger in ledgers for e in ledger) == spent
        assert await store.verify_ledger() == []
    finally:
        await store.aclose()


async def _move_the_cap(store: Store, finished: Callable[[], bool]) -> int:
    caps = 0
    while not finished():
        now = await store.set_user_budget("family", BIG)  # not binding: reports the total
        assert now is not None
        cap = now.spent + now.held + 300
        row = await store.set_user_budget("family", cap)
        if row is None:
            continue  # the total passed the cap before it was set: refused, rightly
        assert row.spent + row.held <= cap
        caps += 1
        while not finished():  # until the storm fills it
            seen = await store.get_user_budget("family")
            assert seen is not None and seen.spent + seen.held <= cap
            if seen.remaining < 60:
                break
            await anyio.sleep(0.005)
        await store.set_user_budget("family", None)
    return caps


# crashes


def _storm_until_killed(url: str, acks: str) -> None:
    anyio.run(_storm_forever, url, acks)


async def _storm_forever(url: str, acks: str) -> None:
    """Charge without end from eight tasks; append each charge to ``acks`` once committed."""
    store = create_store(url, clock=FakeClock())
    await store.open()
    with open(acks, "a", buffering=1) as out:  # line-buffered: each ack reaches the OS

        async def worker(w: int) -> None:
            for n in itertools.count():
                request = ChargeRequest("alice", "sid-0", 1 + (n * 7 + w) % 50, f"c{w}-{n}",
                                        f"k{w}-{n}", "", BIG, "USD")  # fmt: skip
                done = await store.charge(request)
                assert done.status == "charged"
                out.write(f"{request.entry_id} {request.amount}\n")

        async with anyio.create_task_group() as tasks:
            for w in range(8):
                tasks.start_soon(worker, w)


def _acked(path: Path) -> dict[str, int]:
    lines = path.read_text().split("\n")[:-1]  # a torn last line was never acknowledged
    return {entry: int(amount) for entry, amount in (line.split() for line in lines)}


async def test_sigkill_mid_storm_loses_nothing_committed(url: str, tmp_path: Path) -> None:
    name = f"swkill-{uuid.uuid4().hex[:10]}"
    store = create_store(url, clock=FakeClock())
    await store.open()
    try:
        await store.create_session(_new(), max_sessions=3, evict_oldest=False)
        acks = tmp_path / "acks"
        acks.touch()
        child = _SPAWN.Process(target=_storm_until_killed,
                               args=(f"{url}&application_name={name}", str(acks)))  # fmt: skip
        child.start()
        try:
            await _until(lambda: len(_acked(acks)) >= 300, deadline=60)
        finally:
            os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
            child.join(10)
        assert child.exitcode == -signal.SIGKILL
        acked = _acked(acks)
        # The server notices the dead client; whatever it was running ends (committed or not).
        gone = f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{name}'"
        await _until(lambda: _rows(gone) == [(0,)], deadline=30)
        ledger = {e.entry_id: e.amount for e in await _ledger(store)}
        assert acked.items() <= ledger.items()  # every acknowledged charge is there
        budget = await store.get_budget("alice", "sid-0", default_limit=BIG, currency="USD")
        assert budget.spent == sum(ledger.values())
        assert await store.verify_ledger() == []
        print(f"acknowledged {len(acked)}, committed {len(ledger)}")  # for the record
    finally:
        await store.aclose()


async def test_a_charge_that_lost_its_commit_is_not_repeated(store: Store, url: str) -> None:
    await store.charge(_charge(10, "first"))
    _kill_at_next_commit(_schema(url), "sw_ledger")
    with pytest.raises(StorageUnavailable):
        await store.charge(_charge(20, "second"))
    assert _commits(_schema(url)) == 1  # one attempt reached COMMIT; none was repeated
    assert [e.amount for e in await _ledger(store)] == [10]  # the server aborted it
    again = await store.charge(_charge(20, "second"))  # the caller's retry, same key
    assert (again.status, again.budget.spent) == ("charged", 30)  # type: ignore[union-attr]


async def test_a_refund_that_lost_its_commit_is_not_repeated(store: Store, url: str) -> None:
    charge = await store.charge(_charge(10, "k"))
    assert charge.entry is not None
    _kill_at_next_commit(_schema(url), "sw_ledger")
    with pytest.raises(StorageUnavailable):
        await store.refund("alice", "sid-0", charge.entry.entry_id, "r1")
    assert _commits(_schema(url)) == 1
    # Repeated, it would have found its own refund and said "already".
    assert (await store.refund("alice", "sid-0", charge.entry.entry_id, "r2")).status == "refunded"


async def test_a_connection_closed_by_the_server_is_replaced_before_a_charge(
    tmp_path: Path, clock: FakeClock
) -> None:
    name = f"swtest-{uuid.uuid4().hex[:12]}"
    url = url_for("postgresql", tmp_path) + f"&pool_min=1&pool_max=1&application_name={name}"
    store = create_store(url, clock=clock)
    await store.open()
    try:
        await store.create_session(_new(), max_sessions=3, evict_oldest=False)
        await store.charge(_charge(10, "a"))
        killed = _rows("SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                       f"WHERE application_name = '{name}'")  # fmt: skip
        assert killed == [(1,)]
        # Nothing was sent on the dead connection, so the charge is retried, once.
        done = await store.charge(_charge(20, "b"))
        assert (done.status, done.budget.spent) == ("charged", 30)  # type: ignore[union-attr]
        assert [e.amount for e in await _ledger(store)] == [10, 20]
    finally:
        await store.aclose()


# sweeps and schema


async def test_a_swept_session_takes_its_budget_ledger_and_holds(
    store: Store, url: str, clock: FakeClock
) -> None:
    await store.create_session(_new(1), max_sessions=3, evict_oldest=False)
    for n in (0, 1):
        await store.charge(_charge(10, "k", n))
        await store.reserve(_charge(5, None, n))
    await store.revoke_session(ById("alice", "sid-0"))
    clock.advance(1000)
    await store.find_session(ById("alice", "sid-1"), touch_interval=0)  # sid-1 stays live
    clock.advance(800)
    assert await store.sweep_sessions(10) == 1
    for table in ("sw_budgets", "sw_ledger", "sw_holds"):
        rows = _rows(f'SELECT session_id FROM "{_schema(url)}".{table}')
        assert rows == [("sid-1",)], table
    assert await store.verify_ledger() == []


async def test_sweep_holds_is_bounded_and_skips_locked_budgets(
    store: Store, url: str, clock: FakeClock
) -> None:
    for n in range(1, 4):
        await store.create_session(_new(n), max_sessions=10, evict_oldest=False)
    for n in range(4):
        await store.reserve(_charge(5, None, n))
        await store.reserve(_charge(5, None, n))
    clock.advance(60)
    async with await psycopg.AsyncConnection.connect(SERVER) as holder:
        await holder.execute(f'SELECT 1 FROM "{_schema(url)}".sw_budgets '
                             "WHERE session_id = 'sid-3' FOR UPDATE")  # fmt: skip
        assert await store.sweep_holds(4) == 4  # bounded; never waits for sid-3
        assert await store.sweep_holds(100) == 2
        assert _holds(url) == ["sid-3", "sid-3"]
    assert await store.sweep_holds(100) == 2
    assert _holds(url) == [] and await store.verify_ledger() == []


def _holds(url: str) -> list[str]:
    return [str(r[0]) for r in _rows(f'SELECT session_id FROM "{_schema(url)}".sw_holds')]


async def test_a_version_2_schema_is_migrated_and_can_spend(url: str, clock: FakeClock) -> None:
    async with await psycopg.AsyncConnection.connect(SERVER, autocommit=True) as conn:
        assert await migrate(conn, _schema(url), target=2) == 0
    store = create_store(url, clock=clock)
    await store.open()
    try:
        rows = _rows(f'SELECT version FROM "{_schema(url)}".sw_schema_version ORDER BY 1')
        assert [v for (v,) in rows] == list(range(1, LATEST + 1))
        await store.create_session(_new(), max_sessions=3, evict_oldest=False)
        assert (await store.charge(_charge(10, "k"))).status == "charged"
    finally:
        await store.aclose()


async def test_round_trips(tmp_path: Path, clock: FakeClock) -> None:
    store = create_store(url_for("postgresql", tmp_path) + "&pool_min=1&pool_max=1", clock=clock)
    await store.open()
    try:
        await store.create_session(_new(), max_sessions=3, evict_oldest=False)
        await store.set_user_budget("alice", BIG)
        for n in range(6):  # warm: prepared
            await store.charge(_charge(1, f"w{n}"))
            hold = await store.reserve(_charge(1, None))
            await store.capture("alice", "sid-0", hold.hold_id or "", 1, f"c{n}", "")
        first = await store.charge(_charge(1, "k"))
        hold_id = (await store.reserve(_charge(1, None))).hold_id or ""
        other_id = (await store.reserve(_charge(1, None))).hold_id or ""
        owner = ("alice", "sid-0")
        calls: list[tuple[Callable[[], Awaitable[object]], int]] = [
            (partial(store.charge, _charge(1, "k2")), 1),
            (partial(store.charge, _charge(1, "k2")), 1),  # a replay
            (partial(store.refund, *owner, first.entry.entry_id, "r"), 1),  # type: ignore[union-attr]
            (partial(store.capture, *owner, hold_id, 1, "cap", ""), 1),
            (partial(store.release, *owner, other_id), 1),
            (partial(store.get_budget, *owner, default_limit=1, currency="USD"), 1),
            (partial(store.set_budget, *owner, limit=BIG, currency="USD"), 1),
            (partial(store.get_user_budget, "alice"), 1),
            (partial(store.set_user_budget, "alice", BIG), 1),
            (partial(store.list_charges, *owner, after=None, limit=10), 1),
            (partial(store.sweep_holds, 10), 1),
            (partial(store.verify_ledger), 1),
        ]
        assert [(await _traced(store, call()))[0] for call, _ in calls] == [n for _, n in calls]
        clock.advance(1800)  # BEGIN, sweep, state and budgets, ledgers and holds, COMMIT
        assert (await _traced(store, store.sweep_sessions(10)))[0] == 5
    finally:
        await store.aclose()


# the reference


async def test_results_match_the_sqlite_store(url: str, tmp_path: Path, clock: FakeClock) -> None:
    """Random call sequences give identical results on both stores (sweep_holds is asked
    for more than there are, since which expired holds a bounded sweep takes is free)."""
    stores = [create_store(url, clock=clock),
              create_store(f"sqlite:///{tmp_path / 'ref.db'}", clock=clock)]  # fmt: skip
    for one in stores:
        await one.open()
    try:
        rng = random.Random(20240612)
        ids = itertools.count()
        for n in range(4):
            for one in stores:
                await one.create_session(_new(n, f"u{n % 2}"), max_sessions=9, evict_oldest=False)
        for _ in range(600):
            call = _random_call(rng, ids, clock)
            if call is not None:
                results = [await call(one) for one in stores]
                assert results[0] == results[1], call
    finally:
        for one in stores:
            await one.aclose()


def _random_call(rng: random.Random, ids: Any, clock: FakeClock) -> Any:
    n = rng.randrange(4)
    owner = (f"u{n % 2}", f"sid-{n}")
    past = f"e{rng.randrange(next(ids) + 1)}"
    new = f"e{next(ids)}"
    roll = rng.random()
    rng_value = rng.choice([0, 1, 10, 100])
    if roll < 0.35:
        request = ChargeRequest(*owner, rng.choice([1, 5, 20, 50, 200]), new,
                                rng.choice([None, "k1", "k2", new]), "d",
                                rng.choice([100, 150]), "USD", rng.choice([5.0, 20.0]))  # fmt: skip
        return lambda s: (s.reserve if roll < 0.12 else s.charge)(request)
    choices: list[Callable[[Store], Awaitable[object]]] = [
        lambda s: s.refund(*owner, past, new),
        lambda s: s.capture(*owner, past, rng_value, new, "c"),
        lambda s: s.release(*owner, past),
        lambda s: s.set_budget(*owner, limit=rng_value * 3, currency="EUR"),
        lambda s: s.set_user_budget(owner[0], None if rng_value == 0 else rng_value * 10),
        lambda s: s.get_budget(*owner, default_limit=rng_value, currency="USD"),
        lambda s: s.get_user_budget(owner[0]),
        lambda s: s.list_charges(*owner, after=past if rng_value > 50 else None, limit=5),
        lambda s: s.sweep_holds(1000),
        lambda s: s.verify_ledger(),
        lambda s: s.revoke_session(ById(*owner)),
    ]
    if roll > 0.97:
        clock.advance(rng.choice([1, 5, 30]))
        return None
    return rng.choice(choices)
