"""What only the Redis store's job queues have: one hash tag, one round trip per operation, a
claim that reads only the heads of the queues, lost replies, and indexes and counts that
never drift from the jobs (a differential test against the memory store).

Everything runs against the real server from ``tests/conftest.py``; time is a FakeClock.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import cast

import anyio
import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from sessionward import FakeClock, StorageUnavailable
from sessionward.errors import ConfigurationError
from sessionward.stores import create_store
from sessionward.stores.protocols import Store
from sessionward.stores.records import (
    FINISHED,
    RUNNING,
    WAITING,
    JobLimits,
    JobRow,
    JobStatus,
    NewJob,
)
from sessionward.stores.redis import RedisStore
from sessionward.stores.redis.jobs import JOB_FIELDS
from sessionward.stores.redis.keys import encode_id
from tests.stores.test_redis_ledger import LostReply
from tests.stores.test_redis_store import ODD_USERS, RoundTrips, hash_tag, keys_of, prefix

pytestmark = pytest.mark.anyio
BACKEND = "redis"  # tests/stores/conftest.py: url, clock, store, raw

LIMITS = JobLimits(per_user=2, overall=5)
LEASE = 30.0


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> RoundTrips:
    return RoundTrips(monkeypatch)


async def submit(store: Store, user: str, job_id: str, *, attempts: int = 2) -> JobRow:
    row = await store.submit_job(NewJob(job_id, user, "sleep", "{}", attempts), max_queued=1000)
    assert row is not None
    return row


async def claim(
    store: Store, want: int = 100, worker: str = "w1", limits: JobLimits = LIMITS
) -> list[str]:
    rows = await store.claim_jobs(worker, want=want, limits=limits, lease=LEASE)
    return [row.job_id for row in rows]


# key layout


async def test_every_job_key_shares_one_hash_tag_and_none_expires(
    store: RedisStore, url: str, raw: aioredis.Redis
) -> None:
    jobs = {user: f"job:{{{n}}}" for n, user in enumerate(ODD_USERS)}  # odd job ids too
    for user, job_id in jobs.items():
        await submit(store, user, job_id)
    started = await claim(store)
    assert len(started) == LIMITS.overall
    await store.finish_job(started[0], "w1", "succeeded", "1", None)
    base = f"{prefix(url)}:{{jobs}}:"
    expected = {base + name for name in ("seq", "ready", "busy", "leases", "done", "waiting")}
    expected |= {f"{base}j:{encode_id(job_id)}" for job_id in jobs.values()}
    expected |= {f"{base}a:{encode_id(user)}" for user in jobs}
    expected |= {f"{base}q:{encode_id(u)}" for u, job_id in jobs.items() if job_id not in started}
    expected |= {f"{base}s:{encode_id(u)}" for u, job_id in jobs.items() if job_id in started}
    keys = await keys_of(raw, url)
    assert keys == expected
    assert {hash_tag(key) for key in keys} == {"jobs"}
    assert len({key_slot(key.encode()) for key in keys}) == 1
    assert [key for key in keys if await raw.pttl(key) != -1] == []  # purge_jobs deletes them


def test_lua_job_fields_match_the_python_fields() -> None:
    prelude = (resources.files("sessionward.stores.redis") / "lua" / "job_prelude.lua").read_text()
    line = re.search(r"^local JOB_FIELDS = \{(.*)\}$", prelude, re.MULTILINE)
    assert line is not None
    assert tuple(re.findall(r"'(\w+)'", line.group(1))) == JOB_FIELDS
    assert len(JOB_FIELDS) == len(JobRow.__dataclass_fields__) + 1  # + gm (sharded queues)


# round trips


async def test_every_job_operation_is_one_round_trip(
    store: RedisStore, round_trips: RoundTrips
) -> None:
    for n in range(3):
        await submit(store, "u", f"j{n}")
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.submit_job(NewJob("j9", "v", "k", "{}", 1), max_queued=5),
        lambda: store.claim_jobs("w1", want=2, limits=LIMITS, lease=LEASE),
        lambda: store.heartbeat_jobs("w1", ["j0", "j1", "nope"], LEASE),
        lambda: store.progress_job("j0", "w1", 0.5, "half"),
        lambda: store.finish_job("j0", "w1", "succeeded", None, None),
        lambda: store.cancel_job("u", "j2"),
        lambda: store.list_jobs("u", limit=10),
        lambda: store.reap_jobs(limit=10),
        lambda: store.release_jobs("w1", ["j1", "nope"]),
        lambda: store.purge_jobs(finished_before=0.0, limit=10),
        lambda: store.job_counts(),
    ]
    for call in calls:
        round_trips.reset()
        await call()
        assert round_trips.sent == [["EVALSHA"]], call
    round_trips.reset()
    assert await store.get_job("u", "j1") is not None
    assert round_trips.sent == [["HMGET"]]


async def test_a_claim_reads_only_the_heads_of_the_queues(
    store: RedisStore, url: str, raw: aioredis.Redis
) -> None:
    for n in range(300):
        await submit(store, "big", f"big-{n}")
    for user in ("u1", "u2", "u3"):
        await submit(store, user, f"{user}-0")
    assert await claim(store, want=3) == ["big-0", "u1-0", "u2-0"]
    commands = await commands_run_by(raw, url, claim(store, want=3))
    assert len(commands) < 60  # a few per user with waiting jobs, none per waiting job
    job_keys = {m for c in commands for m in re.findall(r"\{jobs\}:j:(\S+)", c)}
    assert job_keys == {"big-1", "u3-0"}  # the claimed ones: no other job is read
    for name, _, *args in (c.split() for c in commands):
        assert name not in ("ZRANGE", "ZREVRANGE") or args[:2] == ["0", "0"]  # heads only


async def commands_run_by(raw: aioredis.Redis, url: str, call: Awaitable[object]) -> list[str]:
    """The commands on this test's keys that scripts ran during ``call`` (from MONITOR)."""
    seen: list[str] = []
    sentinel = f"{prefix(url)}:sentinel"
    async with raw.monitor() as monitor, anyio.create_task_group() as tasks:

        async def watch() -> None:
            async for info in monitor.listen():
                if sentinel in info["command"]:
                    return
                if info["client_type"] == "lua" and prefix(url) in info["command"]:
                    seen.append(info["command"])

        tasks.start_soon(watch)
        await call
        await raw.get(sentinel)
    return seen


async def test_a_purge_can_make_a_user_unserved_again(store: RedisStore, clock: FakeClock) -> None:
    """ "Served" is the latest start among the jobs still stored, on every backend."""
    reference = create_store("memory://", clock=clock)
    await reference.open()
    for s in (reference, store):
        for job_id in ("a0", "b0", "a1", "b1"):
            await submit(s, job_id[0], job_id)
    one = JobLimits(per_user=1, overall=5)
    for s in (reference, store):
        assert await claim(s, 1, limits=one) == ["a0"]
    clock.advance(10)
    for s in (reference, store):
        assert await claim(s, 1, limits=one) == ["b0"]  # a has its one slot
        await s.finish_job("b0", "w1", "succeeded", None, None)
    clock.advance(10)
    for s in (reference, store):
        await s.finish_job("a0", "w1", "succeeded", None, None)
        assert await s.purge_jobs(finished_before=clock.now(), limit=10) == 1  # b0
        assert await claim(s, 1, limits=one) == ["b1"]  # b0 is gone: b was never served
        assert await claim(s, 1, limits=one) == ["a1"]


# lost replies: a script that may have applied is never sent again


async def test_a_claim_whose_reply_was_lost_is_not_sent_again(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    for n in range(3):
        await submit(store, "u", f"j{n}")
    lost = LostReply(monkeypatch)
    lost.armed = True
    with pytest.raises(StorageUnavailable):
        await claim(store)
    assert lost.sent == 1  # not repeated by redis-py, nor by us
    assert (await store.job_counts()).running == LIMITS.per_user  # it did apply, once
    assert await claim(store) == []  # the user's slots are taken by the lost claim
    clock.advance(LEASE)
    reaped = await store.reap_jobs(limit=10)
    assert [(r.job_id, r.status) for r in reaped] == [("j0", "interrupted"), ("j1", "interrupted")]
    assert await claim(store, worker="w2") == ["j0", "j1"]  # in their places, before j2


@pytest.mark.parametrize("op", ["finish", "reap", "purge"])
async def test_a_job_script_that_may_have_applied_is_sent_once(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, op: str
) -> None:
    await submit(store, "u", "j0")
    await claim(store)
    calls = {
        "finish": lambda: store.finish_job("j0", "w1", "failed", None, "boom"),
        "reap": lambda: store.reap_jobs(limit=10),
        "purge": lambda: store.purge_jobs(finished_before=clock.now() + 1, limit=10),
    }
    if op == "purge":
        await store.finish_job("j0", "w1", "succeeded", None, None)
    clock.advance(LEASE)
    lost = LostReply(monkeypatch)
    lost.armed = True
    with pytest.raises(StorageUnavailable):
        await calls[op]()
    assert lost.sent == 1
    row = await store.get_job("u", "j0")
    assert (row.status if row else None) == {"finish": "failed", "reap": "interrupted",
                                             "purge": None}[op]  # fmt: skip
    assert (await store.job_counts()).running == 0


async def test_a_submit_is_keyed_by_its_job_id(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost = LostReply(monkeypatch)
    lost.armed = True
    first = await store.submit_job(NewJob("j1", "u", "sleep", "{}", 2), max_queued=1)
    assert lost.sent == 2 and first is not None and first.seq == 1  # sent again: found it
    assert await store.submit_job(NewJob("j1", "u", "sleep", "{}", 2), max_queued=0) == first
    with pytest.raises(ConfigurationError):  # another job's id: never taken over
        await store.submit_job(NewJob("j1", "intruder", "sleep", "{}", 2), max_queued=9)
    assert await store.get_job("u", "j1") == first
    assert await store.get_job("intruder", "j1") is None
    assert (await store.job_counts()).queued == 1
    assert [r.job_id for r in await store.list_jobs("u", limit=10)] == ["j1"]


async def test_purge_deletes_the_oldest_finished_first(
    store: RedisStore, clock: FakeClock, url: str, raw: aioredis.Redis
) -> None:
    for n in range(4):
        await submit(store, "u", f"j{n}")
    for job_id in ("j3", "j2", "j0", "j1"):
        await store.cancel_job("u", job_id)
        clock.advance(10)
    # j3, j2 and j0 finished before; the two that finished first go (not j0, by seq)
    assert await store.purge_jobs(finished_before=clock.now() - 10, limit=2) == 2
    assert [r.job_id for r in await store.list_jobs("u", limit=10)] == ["j1", "j0"]
    assert await store.purge_jobs(finished_before=clock.now(), limit=5) == 2
    assert await keys_of(raw, url) == {f"{prefix(url)}:{{jobs}}:{k}" for k in ("seq", "waiting")}


# the same results as the memory store, and indexes that never drift


class JobScript:
    """A random sequence of job-store calls over a few users, workers and limits."""

    USERS = ("alice", "{u:bob}", "a:b", "ünï")
    WORKERS = ("w1", "w2")
    LIMITS = (JobLimits(1, 3), JobLimits(2, 5), JobLimits(3, 4), JobLimits(0, 5))
    KINDS = ("advance", "advance", "submit", "submit", "submit", "claim", "claim", "heartbeat",
             "progress", "progress", "finish", "finish", "cancel", "cancel", "get", "list",
             "reap", "reap", "release", "purge", "counts")  # fmt: skip

    def __init__(self, seed: int, clock: FakeClock) -> None:
        self.rng = random.Random(seed)
        self.pick = self.rng.choice
        self.clock = clock
        self.jobs: list[tuple[str, str]] = []  # user, job id
        self.held: dict[str, tuple[str, str]] = {}  # job id: (user, worker), as it runs now

    def step(self) -> tuple[str, Op | None]:
        kind = self.pick(self.KINDS)
        if kind == "advance":
            self.clock.advance(self.pick([1, 10, 29, 30, 31, 120]))
            return kind, None
        kind = kind if self.jobs else "submit"
        return kind, getattr(self, f"_{kind}")()

    def job(self) -> tuple[str, str]:
        """A job, mostly a recent one, mostly with its owner."""
        user, job_id = self.pick(self.jobs[-12:] if self.rng.random() < 0.7 else self.jobs)
        if self.held and self.rng.random() < 0.3:
            job_id = self.pick(sorted(self.held))
            user = self.held[job_id][0]
        return (self.pick(self.USERS) if self.rng.random() < 0.1 else user), job_id

    def held_job(self) -> tuple[str, str]:
        """A running job and, mostly, its worker."""
        if not self.held or self.rng.random() < 0.2:
            return self.job()[1], self.pick(self.WORKERS)
        job_id = self.pick(sorted(self.held))
        return job_id, (self.held[job_id][1] if self.rng.random() < 0.9 else "w3")

    def _submit(self) -> Op:
        n, user = len(self.jobs), self.pick(self.USERS)
        attempts, max_queued = self.pick([1, 2, 3]), self.pick([2, 4, 100])
        job_id = f"j{n}" if self.rng.random() < 0.8 else f"j:{{{n}}}"
        self.jobs.append((user, job_id))
        new = NewJob(job_id, user, self.pick("ab"), f'{{"n": {n}}}', attempts)
        return lambda s: s.submit_job(new, max_queued=max_queued)

    def _claim(self) -> Op:
        worker, want = self.pick(self.WORKERS), self.pick([1, 2, 5, 100])
        limits, lease = self.pick(self.LIMITS), self.pick([30.0, 60.0])
        return lambda s: s.claim_jobs(worker, want=want, limits=limits, lease=lease)

    def _heartbeat(self) -> Op:
        worker, lease = self.pick(self.WORKERS), self.pick([30.0, 60.0])
        ids = [job_id for job_id, (_, w) in self.held.items() if w == worker] + [self.job()[1]]
        return lambda s: s.heartbeat_jobs(worker, ids, lease)

    def _progress(self) -> Op:
        (job_id, worker), progress = self.held_job(), self.pick([0.1, 0.25, 0.5, 0.9])
        return lambda s: s.progress_job(job_id, worker, progress, f"at {progress}")

    def _finish(self) -> Op:
        (job_id, worker), status = self.held_job(), cast(JobStatus, self.pick(sorted(FINISHED)))
        result, error = self.pick([None, "", '{"ok": 1}']), self.pick([None, "", "boom"])
        return lambda s: s.finish_job(job_id, worker, status, result, error)

    def _cancel(self) -> Op:
        user, job_id = self.job()
        return lambda s: s.cancel_job(user, job_id)

    def _get(self) -> Op:
        user, job_id = self.job()
        return lambda s: s.get_job(user, job_id)

    def _list(self) -> Op:
        user, limit = self.pick(self.USERS), self.pick([1, 3, 100])
        return lambda s: s.list_jobs(user, limit=limit)

    def _reap(self) -> Op:
        limit = self.pick([1, 2, 100])
        return lambda s: s.reap_jobs(limit=limit)

    def _release(self) -> Op:
        worker = self.pick(self.WORKERS)
        ids = [job_id for job_id, (_, w) in self.held.items() if w == worker] + [self.job()[1]]
        ids = self.rng.sample(ids, self.rng.randint(1, len(ids)))
        return lambda s: s.release_jobs(worker, ids)

    def _purge(self) -> Op:
        # A limit above the number of jobs: which ones a smaller limit picks is not the same
        # on the references (memory: by seq; SQLite: by status, then seq; Redis: oldest first).
        before = self.clock.now() - self.pick([0, 30, 300])
        return lambda s: s.purge_jobs(finished_before=before, limit=10_000)

    def _counts(self) -> Op:
        return lambda s: s.job_counts()

    def saw(self, result: object) -> None:
        """What the reference answered: which jobs run now, and where."""
        for row in result if isinstance(result, list) else [result]:
            if isinstance(row, JobRow) and row.status in RUNNING and row.worker_id is not None:
                self.held[row.job_id] = (row.user_id, row.worker_id)
            elif isinstance(row, JobRow):
                self.held.pop(row.job_id, None)


Op = Callable[[Store], Awaitable[object]]


def label(kind: str, result: object) -> list[str]:
    if isinstance(result, list) and kind in ("claim", "reap", "release"):
        return [f"{kind}:{row.status}" for row in result]
    if kind in ("heartbeat", "list", "purge", "counts"):
        return [f"{kind}:{'some' if result else 'none'}"]
    return [f"{kind}:{getattr(result, 'status', result)}"]  # a row's status, or None


@pytest.mark.parametrize("seed", range(4))
async def test_same_results_and_exact_counts_as_the_memory_store(
    url: str, raw: aioredis.Redis, seed: int
) -> None:
    clock = FakeClock()
    reference, store = create_store("memory://", clock=clock), create_store(url, clock=clock)
    await reference.open()
    await store.open()
    script, seen = JobScript(seed, clock), Counter[str]()
    try:
        for step in range(600):
            kind, op = script.step()
            if op is None:
                continue
            expected = await op(reference)
            assert await op(store) == expected, (step, kind)
            assert await store.job_counts() == await reference.job_counts(), step
            if step % 20 == 0:
                await assert_indexes(raw, url)
            seen.update(label(kind, expected))
            script.saw(expected)
        await assert_indexes(raw, url)
    finally:
        await store.aclose()
    exercised = {"claim:running", "reap:interrupted", "reap:failed", "reap:cancelled",
                 "submit:queued", "submit:None", "cancel:cancelled", "cancel:cancelling",
                 "finish:cancelled", "finish:succeeded", "finish:None", "progress:running",
                 "progress:cancelling", "heartbeat:some", "purge:some",
                 "release:queued"}  # fmt: skip
    assert exercised <= set(seen), sorted(seen)


async def assert_indexes(raw: aioredis.Redis, url: str) -> None:
    """Every index and count agrees with the jobs themselves (lua/job_prelude.lua)."""
    base = f"{prefix(url)}:{{jobs}}:"
    jobs = await job_hashes(raw, base)
    running = {m: j for m, j in jobs.items() if j["st"] in RUNNING}
    waiting = {m: j for m, j in jobs.items() if j["st"] in WAITING}
    assert await zset(raw, f"{base}leases") == {m: float(j["le"]) for m, j in running.items()}
    busy = Counter(j["um"] for j in running.values())
    assert await raw.hgetall(f"{base}busy") == {um: str(n) for um, n in busy.items()}
    finished = {m: float(j["fa"]) for m, j in jobs.items() if j["st"] in FINISHED}
    assert await zset(raw, f"{base}done") == finished
    assert int(await raw.get(f"{base}waiting") or 0) == len(waiting)
    assert await raw.smembers(f"{base}ready") == {j["um"] for j in waiting.values()}
    users = {j["um"] for j in jobs.values()}
    for um in users:
        assert await zset(raw, f"{base}a:{um}") == {
            m: float(j["seq"]) for m, j in jobs.items() if j["um"] == um
        }
        assert await zset(raw, f"{base}q:{um}") == {
            m: float(j["seq"]) for m, j in waiting.items() if j["um"] == um
        }
        assert await zset(raw, f"{base}s:{um}") == {
            m: float(j["sa"]) for m, j in jobs.items() if j["um"] == um and "sa" in j
        }
    lists = {f"{base}{kind}:{um}" for um in users for kind in "aqs"}
    shared = {base + name for name in ("seq", "ready", "busy", "leases", "done", "waiting")}
    assert await keys_of(raw, url) <= shared | lists | {f"{base}j:{m}" for m in jobs}


async def job_hashes(raw: aioredis.Redis, base: str) -> dict[str, dict[str, str]]:
    keys = [key async for key in raw.scan_iter(match=f"{base}j:*", count=1000)]
    pipe = raw.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    values: list[dict[str, str]] = await pipe.execute()
    return {key.removeprefix(f"{base}j:"): value for key, value in zip(keys, values, strict=True)}


async def zset(raw: aioredis.Redis, key: str) -> dict[str, float]:
    return dict(await raw.zrange(key, 0, -1, withscores=True))
