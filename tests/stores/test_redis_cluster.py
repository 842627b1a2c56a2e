"""What only Redis Cluster has: sharded job queues spread over the shards with exact limits
under racing processes, shard pub/sub, and a primary killed under traffic.

The session's cluster (tests/cluster.py) serves the first tests; the failover test starts
a cluster of its own, since it kills one of its nodes. Sizes are small by default;
SESSIONWARD_STRESS=1 runs them full size.
"""

from __future__ import annotations

import gc
import os
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis.asyncio.cluster import ClusterNode
from redis.crc import key_slot

from sessionward import Settings, StorageError
from sessionward.errors import WriteConflict
from sessionward.events import open_event_hub
from sessionward.stores.records import JobLimits, JobRow, NewJob
from sessionward.stores.redis.events import wire_channel
from sessionward.stores.redis.keys import KeyLayout
from sessionward.testing import wait_until_async
from sessionward.testing.races import race, run_in_processes
from sessionward.ward import open_ward
from tests.cluster import Cluster
from tests.conftest import RUN_ID

pytestmark = [pytest.mark.anyio, pytest.mark.cluster]

FULL = os.environ.get("SESSIONWARD_STRESS") == "1"
SHARDS = 4
LIMITS = JobLimits(per_user=3, overall=8)
USERS = 40 if FULL else 12
JOBS_PER_USER = 10 if FULL else 4


@pytest.fixture
def url(redis_cluster: Cluster, request: pytest.FixtureRequest) -> str:
    name = request.node.name.replace("[", "-").replace("]", "")
    return f"{redis_cluster.url}/?key_prefix=swcl-{RUN_ID}-{name}&job_shards={SHARDS}"


async def test_sharded_queues_spread_over_the_primaries(url: str, redis_cluster: Cluster) -> None:
    layout = KeyLayout(url.split("key_prefix=")[1].split("&")[0], cluster=True)
    homes = {redis_cluster.primary_of(layout.jobs(shard)) for shard in range(SHARDS)}
    assert len(homes) >= 2  # the 4 tags fall on at least 2 of the 3 primaries
    assert len({key_slot(layout.jobs(shard).encode()) for shard in range(SHARDS)}) == SHARDS
    gate = layout.job_gate()
    assert all(key_slot(gate.encode()) != key_slot(layout.jobs(s).encode()) for s in range(4))
    async with open_ward(url, sweep=False) as ward:
        for user in range(USERS):
            await _submit(ward.store, f"user{user}", 2)
        rows = []  # claims start at a random shard: 8 claims of one job spread
        for _ in range(8):
            rows += await ward.store.claim_jobs("w", want=1, limits=LIMITS, lease=30)
        shard_of = ward.store._user_shard  # type: ignore[attr-defined]
        assert len(rows) == 8 and len({shard_of(row.user_id) for row in rows}) >= 2


async def test_limits_stay_exact_under_racing_processes(url: str) -> None:
    """4 processes of 4 claimers each claim, hold and finish until every job ran once.
    Every job's [started_at, finished_at) is the server's time of its claim and finish
    (one machine, one clock): at no instant may more than 8 overlap, nor 3 of one user."""
    async with open_ward(url, sweep=False) as ward:
        for user in range(USERS):
            await _submit(ward.store, f"user{user}", JOBS_PER_USER)
        done = await run_in_processes([(_worker, (url, p)) for p in range(4)])
        assert sum(done) == USERS * JOBS_PER_USER
        rows = [
            row for u in range(USERS) for row in await ward.store.list_jobs(f"user{u}", limit=100)
        ]
        assert len(rows) == USERS * JOBS_PER_USER
        assert {(row.status, row.attempts) for row in rows} == {("succeeded", 1)}
        assert _most_at_once(rows) <= 8
        for user in range(USERS):
            assert _most_at_once([row for row in rows if row.user_id == f"user{user}"]) <= 3
        assert _most_at_once(rows) >= 4  # the processes did race
        raw: Any = ward.store._client  # type: ignore[attr-defined]
        gate = ward.store._keys.job_gate()  # type: ignore[attr-defined]
        assert await raw.zcard(gate) == 0  # every slot held was given back
        assert (await ward.store.job_counts()).running == 0


def _most_at_once(rows: list[JobRow]) -> int:
    edges = sorted(
        [(row.started_at, 1) for row in rows if row.started_at is not None]
        + [(row.finished_at, -1) for row in rows if row.finished_at is not None]
    )  # an end sorts before a start at the same instant: [start, end)
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


async def _worker(url: str, p: int, barrier: Any) -> int:
    async with open_ward(url, sweep=False) as ward:
        await anyio.to_thread.run_sync(barrier.wait)
        finished = await race([partial(_claim_loop, ward.store, f"p{p}w{n}") for n in range(4)])
    return sum(finished)


async def _claim_loop(store: Any, worker: str) -> int:
    finished = idle = 0
    while idle < 20:
        rows = await store.claim_jobs(worker, want=2, limits=LIMITS, lease=60)
        if not rows:
            counts = await store.job_counts()
            idle = idle + 1 if counts.queued == 0 else 0
            await anyio.sleep(0.005)  # a worker's idle poll
            continue
        for row in rows:
            assert await store.finish_job(row.job_id, worker, "succeeded", "1", None)
            finished += 1
    return finished


async def _submit(store: Any, user: str, n: int) -> None:
    for i in range(n):
        assert await store.submit_job(NewJob(f"{user}-{i}", user, "k", "{}", 2), max_queued=100)


async def test_events_cross_the_cluster_on_a_shard_channel(
    url: str, redis_cluster: Cluster
) -> None:
    wire = wire_channel(url.split("key_prefix=")[1].split("&")[0])
    async with open_event_hub(url) as sender, open_event_hub(url) as receiver:
        assert sender.connected and receiver.connected
        with redis_cluster.client(redis_cluster.primary_of(wire)) as shard:
            assert shard.execute_command("PUBSUB", "SHARDNUMSUB", wire) == [wire, 2]
        async with receiver.subscribe("news") as events:
            await sender.publish("news", {"n": 1})
            with anyio.fail_after(5):
                event = await events.__anext__()
        assert event == {"n": 1}


# a primary killed under traffic


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="sw-failover-")))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def failover_ward(own_cluster: Cluster) -> AsyncIterator[Any]:
    url = f"{own_cluster.url}/?key_prefix=fo&wait_replicas=1&wait_timeout=1&socket_timeout=1"
    settings = Settings(budget_default=10**9)
    async with open_ward(url, settings=settings, sweep=False) as ward:
        yield ward
    # redis-py 7.4 drops the ClusterNode objects a failover replaces without closing their
    # connections (fixed in 8.1): close them here, or they warn after the event loop ends
    for node in [obj for obj in gc.get_objects() if isinstance(obj, ClusterNode)]:
        await node.disconnect()
    gc.collect()


WRITERS = 6
ROUNDS_AFTER = 30 if FULL else 10


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_killed_primary_loses_no_acknowledged_write(
    own_cluster: Cluster, failover_ward: Any
) -> None:
    """Compare-and-set writes and charges run on 6 users while the primary of one user's
    slot is killed (-9): its replica takes over, the killed node comes back as a replica,
    and every write that was acknowledged (confirmed by WAIT 1) is there afterwards.
    (redis-py 7.4 leaves "Unclosed ClusterNode" warnings behind a failover, from its own
    objects: they are ignored here.)"""
    ward = failover_ward
    made = [await ward.sessions.create(f"fo{n}") for n in range(WRITERS)]
    acked: dict[int, int] = {}  # writer -> last acknowledged version
    charged: dict[int, list[str]] = {n: [] for n in range(WRITERS)}
    errors: Counter[str] = Counter()
    victim = own_cluster.primary_of("fo:{u:fo0}:s")
    killed = anyio.Event()
    after_kill = dict.fromkeys(range(WRITERS), 0)

    async def writer(n: int) -> None:
        session = made[n].session
        scope, version = session.scope("session"), 0
        while after_kill[n] < ROUNDS_AFTER:
            try:
                version = await ward.state.put(scope, "doc", version + 1, expected_version=version)
                acked[n] = version
                charge = await ward.budgets.charge(session, 1, f"k{n}-{version}")
                charged[n].append(charge.entry.entry_id)
            except (StorageError, WriteConflict) as exc:
                errors[type(exc).__name__] += 1
                await anyio.sleep(0.05)  # back off while the shard has no primary
                doc = await _read(ward, scope)
                version = doc if doc is not None else version
                continue
            if killed.is_set():
                after_kill[n] += 1

    with anyio.fail_after(90):
        await _traffic(writer, acked, own_cluster, victim, killed)
    for n in range(WRITERS):
        await ward.sessions.validate(made[n].token)  # its token's route survived too
        doc = await ward.state.get(made[n].session.scope("session"), "doc")
        assert doc is not None and doc.version >= acked[n] and doc.data == doc.version
        ledger = {
            entry.entry_id for entry in await ward.budgets.charges(made[n].session, limit=1000)
        }
        assert set(charged[n]) <= ledger
    assert errors  # the victim's shard did fail for a while


async def _traffic(
    writer: Any, acked: dict[int, int], cluster: Cluster, victim: int, killed: anyio.Event
) -> None:
    async with anyio.create_task_group() as tasks:
        for n in range(WRITERS):
            tasks.start_soon(writer, n)
        await wait_until_async(lambda: _at_least(acked, 5), what="writes before the kill")
        cluster.kill(victim)
        killed.set()
        # its replica takes over; with no replica left WAIT 1 acknowledges nothing on that
        # shard, so the killed node comes back (it rejoins as the new primary's replica)
        await wait_until_async(
            lambda: _promoted(cluster, victim), timeout=30, what="the replica's promotion"
        )
        await anyio.to_thread.run_sync(cluster.start_node, victim)


async def _promoted(cluster: Cluster, victim: int) -> bool:
    try:
        return cluster.primary_of("fo:{u:fo0}:s") != victim
    except Exception:  # a node between states
        return False


async def _at_least(acked: dict[int, int], n: int) -> bool:
    return len(acked) == WRITERS and min(acked.values()) >= n


async def _read(ward: Any, scope: Any) -> int | None:
    try:
        doc = await ward.state.get(scope, "doc")
    except StorageError:
        return None
    return None if doc is None else int(doc.version)
