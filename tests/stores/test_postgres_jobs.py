"""PostgreSQL job queues, against the real server: migration, round trips, exact claims
under concurrency, failures, and identical results to the memory store.

What every backend shares is proven by the conformance suite (``TestJobStores``).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from sessionward.clock import FakeClock
from sessionward.errors import ConfigurationError, StorageUnavailable
from sessionward.rules.jobs import fair_order
from sessionward.rules.sessions import stamp_new_session
from sessionward.stores import create_store
from sessionward.stores.postgres.schema import LATEST, lock_key, migrate
from sessionward.stores.protocols import Store
from sessionward.stores.records import ByToken, JobCounts, JobLimits, JobRow, NewJob
from sessionward.testing.jobs import LEASE, LIMITS
from sessionward.testing.jobs import claim as _claim
from sessionward.testing.jobs import submit as _submit
from sessionward.testing.races import race
from tests.conftest import url_for
from tests.stores.test_postgres_store import (
    SERVER,
    TABLES,
    _commits,
    _kill_at_next_commit,
    _new,
    _rows,
    _schema,
    _tables_by_schema,
    _traced,
    _until,
    _until_blocked,
    _versions,
)

pytestmark = pytest.mark.anyio
BACKEND = "postgresql"  # tests/stores/conftest.py: url, clock, store, raw


def _queues_are_exact(schema: str) -> bool:
    """Every queue row says what the jobs say: the user's oldest waiting job, and the
    latest start among the user's stored jobs; one row per user with stored jobs."""
    return not _rows(f"""SELECT * FROM (
        SELECT user_id, min(seq) FILTER (WHERE status IN ('queued', 'interrupted')) AS head,
               COALESCE(max(started_at), '-infinity') AS served
        FROM "{schema}".sw_jobs GROUP BY user_id) AS t
    FULL JOIN "{schema}".sw_job_queues AS q USING (user_id)
    WHERE t.user_id IS NULL OR q.user_id IS NULL OR q.head IS DISTINCT FROM t.head
       OR q.served <> t.served""")


# schema


async def test_a_version_3_schema_is_migrated_and_keeps_its_data(
    url: str, clock: FakeClock
) -> None:
    schema = _schema(url)
    session = stamp_new_session(_new(), clock.now())
    async with await psycopg.AsyncConnection.connect(SERVER, autocommit=True) as conn:
        assert await migrate(conn, schema, target=3) == 0
        row = asdict(session)
        columns, values = ", ".join(row), ", ".join(f"%({k})s" for k in row)
        await conn.execute(f'INSERT INTO "{schema}".sw_sessions ({columns}) VALUES ({values})', row)
        await conn.execute(f"""INSERT INTO "{schema}".sw_budgets VALUES
            ('alice', 'sid-0', 100, 7, 0, 'EUR')""")  # fmt: skip
    assert "sw_jobs" not in _tables_by_schema()[schema]
    store = create_store(url, clock=clock)
    await store.open()
    try:
        assert [v for v, _ in _versions(schema)] == list(range(1, LATEST + 1)) == [1, 2, 3, 4, 5, 6]
        assert _tables_by_schema()[schema] == TABLES
        assert (await store.find_session(ByToken("hash-0"), touch_interval=None)).row == session
        budget = await store.get_budget("alice", "sid-0", default_limit=1, currency="USD")
        assert (budget.limit, budget.spent, budget.currency) == (100, 7, "EUR")
        await _submit(store, "alice", 2)
        assert await _claim(store) == ["alice-job0", "alice-job1"]
    finally:
        await store.aclose()


# round trips


async def test_every_job_operation_is_one_round_trip(tmp_path: Path, clock: FakeClock) -> None:
    store = create_store(url_for("postgresql", tmp_path) + "&pool_min=1&pool_max=1", clock=clock)
    await store.open()
    try:
        for round_ in range(7):  # the first ones warm up: statements get prepared
            trips = await _each_once(store, clock, round_)
        assert trips == dict.fromkeys(trips, 1) and len(trips) == 12
    finally:
        await store.aclose()


async def _each_once(store: Store, clock: FakeClock, n: int) -> dict[str, int]:
    """Every operation once, traced, each doing real work; the round trips of each."""
    trips: dict[str, int] = {}

    async def traced(name: str, call: Awaitable[Any]) -> Any:
        trips[name], result = await _traced(store, call)
        return result

    for user in ("a", "b", "c"):
        assert await traced("submit", store.submit_job(NewJob(f"{user}{n}", user, "k", "{}", 1),
                                                       max_queued=9))  # fmt: skip
    claim = store.claim_jobs("w", want=3, limits=JobLimits(9, 9), lease=LEASE)
    assert len(await traced("claim", claim)) == 3
    assert await traced("heartbeat", store.heartbeat_jobs("w", [f"a{n}", f"b{n}"], LEASE)) == []
    assert await traced("progress", store.progress_job(f"a{n}", "w", 0.5, "half")) == "running"
    assert await traced("finish", store.finish_job(f"a{n}", "w", "succeeded", "1", None))
    assert await traced("cancel", store.cancel_job("b", f"b{n}"))
    assert await traced("get", store.get_job("a", f"a{n}"))
    assert await traced("list", store.list_jobs("a", limit=3))
    assert len(await traced("release", store.release_jobs("w", [f"c{n}", "nope"]))) == 1
    claim = store.claim_jobs("w", want=1, limits=JobLimits(9, 9), lease=LEASE)
    assert len(await traced("claim", claim)) == 1  # c's job again
    clock.advance(LEASE)
    assert len(await traced("reap", store.reap_jobs(limit=9))) == 2
    assert await traced("purge", store.purge_jobs(finished_before=clock.now() + 1, limit=9)) == 3
    assert await traced("counts", store.job_counts()) == JobCounts(0, 0)
    return trips


# exact claims


@pytest.fixture
async def pools(url: str, clock: FakeClock) -> AsyncIterator[list[Store]]:
    """Two stores on one schema: two instances, each with its own pool."""
    stores = [create_store(url, clock=clock), create_store(url, clock=clock)]
    try:
        for one in stores:
            await one.open()
        yield stores
    finally:
        for one in stores:
            await one.aclose()


async def test_claims_from_two_pools_stay_exact(pools: list[Store], url: str) -> None:
    for user in range(10):
        await _submit(pools[0], f"user{user}", 10)
    calls = [partial(_claim, pools[n % 2], 1 + n % 3, LIMITS, f"w{n}") for n in range(30)]
    claimed = [job for batch in await race(calls) for job in batch]
    # However the claims interleave, together they start the first 8 of the fair order:
    # every user's oldest job, for users 0 to 7.
    assert sorted(claimed) == sorted(f"user{u}-job0" for u in range(8))
    rows = _rows(f'SELECT user_id, count(*) FROM "{_schema(url)}".sw_jobs '
                 "WHERE status = 'running' GROUP BY user_id")  # fmt: skip
    assert sum(n for _, n in rows) == 8 and max(n for _, n in rows) <= 3
    assert (await pools[1].job_counts()).running == 8 and _queues_are_exact(_schema(url))


async def test_submits_from_two_pools_respect_the_queue_bound(pools: list[Store]) -> None:
    calls = [partial(pools[n % 2].submit_job, NewJob(f"j{n}", "u", "k", "{}", 1), max_queued=5)
             for n in range(30)]  # fmt: skip
    made = await race(calls)
    assert not [m for m in made if isinstance(m, Exception)]
    assert sum(row is not None for row in made) == (await pools[0].job_counts()).queued == 5


async def test_cancels_and_claims_from_two_pools(pools: list[Store], url: str) -> None:
    """Claims and cancels of the same waiting jobs at once: each job is either started or
    cancelled, never both, and the limits and the queues stay exact."""
    for user in range(10):
        await _submit(pools[0], f"user{user}", 3)
    claims = [partial(_claim, pools[n % 2], 2, LIMITS, f"w{n}") for n in range(10)]
    cancels = [partial(pools[n % 2].cancel_job, f"user{n % 10}", f"user{n % 10}-job{n // 10}")
               for n in range(30)]  # fmt: skip
    outcomes = await race([*claims, *cancels])
    assert not [o for o in outcomes if isinstance(o, Exception)]
    claimed = {job for batch in outcomes[:10] for job in batch}
    final = {o.job_id: o for o in outcomes[10:]}
    assert len(claimed) <= 8 and all(final[j].status == "cancelling" for j in claimed)
    assert all(row.attempts == 0 for j, row in final.items() if row.status == "cancelled")
    assert _queues_are_exact(_schema(url))


async def test_mixed_traffic_never_deadlocks(store: Store, url: str, clock: FakeClock) -> None:
    """Raw calls (no retries to hide a deadlock) of every operation from many connections
    at once; afterwards the limits hold and the queues are exact."""
    jobs, lock = store._jobs, lock_key(_schema(url), "jobs-claim")  # type: ignore[attr-defined]

    async def worker(w: int) -> None:
        rng, held = random.Random(w), list[tuple[str, str]]()
        async with await psycopg.AsyncConnection.connect(SERVER, autocommit=True) as conn:
            for n in range(80):
                await _raw_call(conn, jobs, lock, rng, held, f"w{w}", n, clock.now())
                clock.advance(rng.choice([0.0, 0.0, 0.5]))

    async with anyio.create_task_group() as tasks:
        for w in range(8):
            tasks.start_soon(worker, w)
    by_user = _rows(f"""SELECT user_id, count(*) FROM "{_schema(url)}".sw_jobs
        WHERE status IN ('running', 'cancelling') GROUP BY user_id""")  # fmt: skip
    assert sum(n for _, n in by_user) <= 5 and all(n <= 2 for _, n in by_user)
    assert _queues_are_exact(_schema(url))


async def _raw_call(
    conn: Any, jobs: Any, lock: int, rng: random.Random, held: list[tuple[str, str]],
    worker: str, n: int, now: float,
) -> None:  # fmt: skip
    user, roll = f"u{rng.randint(0, 5)}", rng.random()
    if roll < 0.3:
        new = {"job_id": f"{worker}-{n}", "user_id": user, "kind": "k", "params": "{}"}
        await conn.execute(jobs.submit, {**new, "max_attempts": 2, "max_queued": 6, "now": now,
                                         "lock": lock})  # fmt: skip
    elif roll < 0.5:
        params = {"worker_id": worker, "want": 2, "per_user": 2, "overall": 5, "lease": 3.0}
        cur = await conn.execute(jobs.claim, {**params, "now": now, "lock": lock})
        held += [(row[0], row[1]) for row in await cur.fetchall()]
    elif roll < 0.75 and held:
        await _random_worker_call(conn, jobs, lock, rng, held, worker, now)
    elif roll < 0.85:
        job = f"w{rng.randint(0, 7)}-{rng.randint(0, n)}"
        await conn.execute(jobs.cancel, {"user_id": user, "job_id": job, "now": now, "lock": lock})
    elif roll < 0.95:
        texts = {"interrupted": "i", "failed": "f"}
        await conn.execute(jobs.reap, {**texts, "limit": 3, "now": now, "lock": lock})
    else:
        await conn.execute(jobs.purge, {"before": now, "limit": 3, "lock": lock})


async def _random_worker_call(
    conn: Any, jobs: Any, lock: int, rng: random.Random, held: list[tuple[str, str]], worker: str,
    now: float,
) -> None:  # fmt: skip
    job_id, _ = rng.choice(held)
    key = {"job_id": job_id, "worker_id": worker, "now": now}
    roll = rng.random()
    if roll < 0.3:
        await conn.execute(jobs.heartbeat, {**key, "job_ids": [job_id], "lease": 3.0})
    elif roll < 0.5:
        await conn.execute(jobs.progress, {**key, "progress": rng.random(), "message": ""})
    elif roll < 0.6:
        release = {**key, "job_ids": [job_id], "released": "r", "lock": lock}
        await conn.execute(jobs.release, release)
        held.remove((job_id, _))
    else:
        await conn.execute(
            jobs.finish, {**key, "status": "succeeded", "result": "1", "error": None}
        )
        held.remove((job_id, _))


async def test_what_waits_for_the_claim_lock(store: Store, url: str) -> None:
    """Held exclusively (a claim in flight), the claim lock holds up every change to the
    queues but not a worker's progress, heartbeat or finish; held shared (a submit in
    flight), it holds up only claims."""
    running, _, waiting = await _submit(store, "u", 3)
    await _claim(store, want=2)
    key = lock_key(_schema(url), "jobs-claim")
    async with await psycopg.AsyncConnection.connect(SERVER, autocommit=True) as holder:
        await holder.execute("SELECT pg_advisory_lock(%s)", [key])
        with anyio.fail_after(10):
            await store.heartbeat_jobs("w1", [running.job_id], LEASE)
            assert await store.progress_job(running.job_id, "w1", 0.5, "") == "running"
            assert await store.finish_job(running.job_id, "w1", "succeeded", "1", None)
        await _waits_for(holder, url, "sw_cancel_job", store.cancel_job("u", waiting.job_id))
        await holder.execute("SELECT pg_advisory_lock_shared(%s)", [key])
        with anyio.fail_after(10):
            assert await store.submit_job(NewJob("more", "u", "k", "{}", 1), max_queued=9)
            assert await store.cancel_job("u", "more")
        await _waits_for(holder, url, "sw_claim_jobs", _claim(store))
    assert _queues_are_exact(_schema(url))


async def _waits_for(holder: Any, url: str, function: str, call: Awaitable[Any]) -> None:
    """``call`` waits for the lock ``holder`` holds, and completes once it is released."""
    done: list[Any] = []

    async def run() -> None:
        done.append(await call)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run)
        await _until_blocked(_schema(url), function)
        assert done == []
        await holder.execute("SELECT pg_advisory_unlock_all()")
    assert done


# failures


async def test_a_claim_that_lost_its_commit_is_not_repeated(store: Store, url: str) -> None:
    await _submit(store, "u", 3)
    _kill_at_next_commit(_schema(url), "sw_jobs")
    with pytest.raises(StorageUnavailable):
        await _claim(store)
    assert _commits(_schema(url)) == 1  # one attempt reached COMMIT; none was repeated
    assert (await store.job_counts()).running == 0  # the server aborted it
    claimed = await store.claim_jobs("w2", want=9, limits=LIMITS, lease=LEASE)
    assert [(r.job_id, r.attempts) for r in claimed] == [(f"u-job{i}", 1) for i in range(3)]


async def test_a_finish_that_lost_its_commit_is_not_repeated(store: Store, url: str) -> None:
    [job] = await _submit(store, "u", 1)
    await _claim(store)
    _kill_at_next_commit(_schema(url), "sw_jobs")
    with pytest.raises(StorageUnavailable):
        await store.finish_job(job.job_id, "w1", "succeeded", "1", None)
    assert _commits(_schema(url)) == 1
    done = await store.finish_job(job.job_id, "w1", "succeeded", "1", None)
    assert done is not None and done.status == "succeeded"


async def test_a_repeated_submit_finds_its_job(store: Store, url: str) -> None:
    new = NewJob("j1", "u", "k", '{"a": 1}', 2)
    first = await store.submit_job(new, max_queued=1)
    assert first is not None
    assert await store.submit_job(new, max_queued=1) == first  # a retry after a lost reply
    _kill_at_next_commit(_schema(url), "sw_jobs")
    again = await store.submit_job(NewJob("j2", "v", "k", "{}", 2), max_queued=1)
    assert again is not None and _commits(_schema(url)) == 2  # aborted, so made again
    with pytest.raises(ConfigurationError):  # another job's id
        await store.submit_job(NewJob("j1", "other", "k", "{}", 2), max_queued=1)


async def test_the_same_submit_sent_twice_at_once_makes_one_job(store: Store, url: str) -> None:
    new, made = NewJob("j1", "u", "k", "{}", 2), []

    async def submit() -> None:
        made.append(await store.submit_job(new, max_queued=5))

    async with await psycopg.AsyncConnection.connect(SERVER, autocommit=True) as holder:
        await holder.execute("SELECT pg_advisory_lock(%s)", [lock_key(_schema(url), "jobs-claim")])
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(submit)
            tasks.start_soon(submit)
            await _until(lambda: _waiting_for_locks(_schema(url), "sw_submit_job") == 2)
            await holder.execute("SELECT pg_advisory_unlock_all()")
    assert made[0] == made[1] and made[0] is not None
    assert (await store.job_counts()).queued == 1 and _queues_are_exact(_schema(url))


def _waiting_for_locks(schema: str, function: str) -> int:
    return int(_rows("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                     f"AND query LIKE '%{schema}%{function}%'")[0][0])  # fmt: skip


async def test_reap_and_purge_skip_jobs_locked_by_others(
    store: Store, url: str, clock: FakeClock
) -> None:
    _, b = await _submit(store, "u", 2, attempts=1)
    await _claim(store)
    await store.finish_job(b.job_id, "w1", "failed", None, "boom")
    clock.advance(LEASE)
    async with await psycopg.AsyncConnection.connect(SERVER) as holder:
        await holder.execute(f'SELECT 1 FROM "{_schema(url)}".sw_jobs FOR UPDATE')
        with anyio.fail_after(10):  # neither waits for the holder
            assert await store.reap_jobs(limit=10) == []
            assert await store.purge_jobs(finished_before=clock.now(), limit=10) == 0
    assert [r.status for r in await store.reap_jobs(limit=10)] == ["failed"]
    assert await store.purge_jobs(finished_before=clock.now() + 1, limit=10) == 2
    assert _queues_are_exact(_schema(url)) and not _rows(
        f'SELECT * FROM "{_schema(url)}".sw_job_queues'
    )  # no jobs left, no queue row left


async def test_purge_deletes_the_oldest_finished_first(store: Store, clock: FakeClock) -> None:
    jobs = await _submit(store, "u", 4)
    for job in reversed(jobs):  # the last submitted finishes first
        await store.cancel_job("u", job.job_id)
        clock.advance(1)
    assert await store.purge_jobs(finished_before=clock.now(), limit=3) == 3
    assert [r.job_id for r in await store.list_jobs("u", limit=10)] == ["u-job0"]


async def test_the_server_clock_is_used_when_none_is_injected(url: str) -> None:
    store = create_store(url)
    await store.open()
    try:
        [queued] = await _submit(store, "u", 1)
        [running] = await store.claim_jobs("w", want=1, limits=LIMITS, lease=LEASE)
    finally:
        await store.aclose()
    assert running.started_at is not None and running.lease_expires_at is not None
    assert queued.created_at <= running.started_at == running.lease_expires_at - LEASE
    assert abs(running.started_at - time.time()) < 5  # the server is local


# identical to the reference


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_jobs_match_the_memory_store(
    store: Store, url: str, clock: FakeClock, seed: int
) -> None:
    """Random sequences of every operation give results identical to the reference, row
    for row and float for float (4, 6, then 8 users: more of them wait than slots are free)."""
    reference = create_store("memory://", clock=clock)
    rng, users, schema = random.Random(seed), USERS[: 2 + 2 * seed], _schema(url)
    owners: dict[str, str] = {}  # job id: user
    held: list[tuple[str, str]] = []  # (job, worker) claimed, so workers mostly act on theirs
    for step in range(600):
        if rng.random() < 0.07:
            clock.advance(rng.choice([0.5, 1.0, 3.0, 7.0, 12.0]))
            continue
        name, args, kwargs = _random_call(rng, users, owners, held, step, clock)
        got = await getattr(store, name)(*args, **kwargs)
        assert got == await getattr(reference, name)(*args, **kwargs), (step, name, args)
        if name == "claim_jobs":
            held += [(row.job_id, args[0]) for row in got]
        assert step % 50 or _queues_are_exact(schema), step
    for user in users:
        assert await store.list_jobs(user, limit=10_000) == await reference.list_jobs(
            user, limit=10_000
        )
    assert _queues_are_exact(schema)


USERS = ("ann", "bob", "cy", "dee", "eve", "fay", "gus", "hal")
_LIMIT_CHOICES = [JobLimits(1, 2), JobLimits(2, 3), JobLimits(3, 8), JobLimits(2, 100)]


Call = tuple[str, tuple[Any, ...], dict[str, Any]]


def _random_call(
    rng: random.Random, users: Sequence[str], owners: dict[str, str],
    held: list[tuple[str, str]], n: int, clock: FakeClock,
) -> Call:  # fmt: skip
    """One random call; ``owners`` (job id to user) grows with each submit."""
    job = rng.choice([*owners, "nope"]) if owners else "nope"
    worker, roll = rng.choice(["w1", "w2"]), rng.random()
    if held and rng.random() < 0.7:
        job, worker = rng.choice(held[-8:])
    if roll < 0.22:
        user = rng.choice(users)
        owners[f"j{n}"] = user
        new = NewJob(f"j{n}", user, "k", json.dumps({"n": n}), rng.randint(1, 3))
        return "submit_job", (new,), {"max_queued": rng.randint(2, 6)}
    if roll < 0.4:
        limits = rng.choice(_LIMIT_CHOICES)
        return "claim_jobs", (worker,), {"want": rng.randint(0, 4), "limits": limits,
                                         "lease": rng.choice([5.0, 10.0])}  # fmt: skip
    if roll < 0.75:
        return _random_write(rng, users, owners, job, worker, n, roll)
    return _random_read(rng, users, owners, job, clock)


def _random_write(
    rng: random.Random, users: Sequence[str], owners: dict[str, str], job: str, worker: str,
    n: int, roll: float,
) -> Call:  # fmt: skip
    if roll < 0.47:
        ids = rng.sample([*owners, "nope"], min(len(owners) + 1, 4))
        return "heartbeat_jobs", (worker, ids, rng.choice([5.0, 10.0])), {}
    if roll < 0.55:
        progress = rng.choice([0.1, 0.3, 0.5, 0.9, math.nan])
        return "progress_job", (job, worker, progress, f"m{n}"), {}
    if roll < 0.66:
        status = rng.choice(["succeeded", "failed", "cancelled"])
        return "finish_job", (job, worker, status, f'"r{n}"', rng.choice([None, "e"])), {}
    if roll < 0.70:
        ids = [job, *rng.sample([*owners, "nope"], min(len(owners) + 1, 3))]
        return "release_jobs", (worker, ids), {}
    user = owners.get(job, "x") if rng.random() < 0.85 else rng.choice(users)
    return "cancel_job", (user, job), {}


def _random_read(
    rng: random.Random, users: Sequence[str], owners: dict[str, str], job: str, clock: FakeClock
) -> Call:
    roll = rng.random()
    if roll < 0.2:
        return "get_job", (owners.get(job, "x"), job), {}
    if roll < 0.4:
        return "list_jobs", (rng.choice(users),), {"limit": rng.randint(1, 5)}
    if roll < 0.55:
        return "job_counts", (), {}
    if roll < 0.85:
        return "reap_jobs", (), {"limit": rng.randint(1, 3)}
    # A purge's batch takes every job it may (which ones a smaller batch takes is not
    # specified: PostgreSQL takes the oldest finished, the memory store submission order).
    before = clock.now() - rng.choice([0.0, 5.0, 20.0])
    return "purge_jobs", (), {"finished_before": before, "limit": 10_000}


def test_the_claim_rule_is_fair_order() -> None:
    """The restatement in ``sw_pick_jobs`` (keys ``(n + k, served if k = 0 else inf, seq)``
    in order, read for the ``free`` users with the smallest first keys only) picks exactly
    what ``fair_order`` picks, on random queues."""
    rng = random.Random(7)
    for _ in range(3000):
        queued = [_row(f"u{rng.randint(0, 5)}", seq) for seq in range(rng.randint(0, 25))]
        running = {f"u{u}": rng.randint(0, 3) for u in range(6) if rng.random() < 0.5}
        served = {f"u{u}": float(rng.randint(0, 3)) for u in range(6) if rng.random() < 0.6}
        limits, want = JobLimits(rng.randint(1, 4), rng.randint(1, 12)), rng.randint(0, 10)
        expected = fair_order(queued, running, sum(running.values()), limits, want, served)
        assert _keyed_order(queued, running, served, limits, want) == expected


def _keyed_order(
    queued: list[JobRow], running: dict[str, int], served: dict[str, float], limits: JobLimits,
    want: int,
) -> list[JobRow]:  # fmt: skip
    free = max(min(want, limits.overall - sum(running.values())), 0)
    queues: dict[str, list[JobRow]] = {}
    for job in queued:
        queues.setdefault(job.user_id, []).append(job)
    open_users = [u for u in queues if running.get(u, 0) < limits.per_user]
    firsts = sorted(open_users, key=lambda u: (running.get(u, 0), served.get(u, -math.inf),
                                               queues[u][0].seq))[:free]  # fmt: skip
    keyed = []
    for user in firsts:
        n = running.get(user, 0)
        for k, job in enumerate(queues[user][: min(limits.per_user - n, free)]):
            keyed.append(
                ((n + k, served.get(user, -math.inf) if k == 0 else math.inf, job.seq), job)
            )
    return [job for _, job in sorted(keyed, key=lambda kj: kj[0])[:free]]


def _row(user: str, seq: int) -> JobRow:
    return JobRow(f"{user}-{seq}", user, "k", "{}", "queued", 0.0, "", None, None, 0.0,
                  None, None, 0, 1, None, None, seq)  # fmt: skip
