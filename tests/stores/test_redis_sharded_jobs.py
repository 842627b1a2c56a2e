"""Sharded job queues (``job_shards=4``) on the single test server: the gate's bookkeeping,
its reconciliation, and ``wait_replicas`` refusing what no replica confirmed. The same
queues on a real cluster: tests/stores/test_redis_cluster.py and the conformance module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sessionward import FakeClock, StorageUnavailable
from sessionward.stores import create_store
from sessionward.stores.records import JobLimits, NewJob, StateScope
from sessionward.stores.redis.jobs_sharded import GATE_STALE
from tests.conftest import url_for

pytestmark = pytest.mark.anyio

LIMITS = JobLimits(per_user=3, overall=8)


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Any]:
    opened: Any = create_store(f"{url_for('redis', tmp_path)}&job_shards=4", clock=clock)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def _gate(store: Any) -> list[str]:
    return list(await store._client.zrange(store._keys.job_gate(), 0, -1))


async def test_each_running_job_holds_one_gate_member(store: Any) -> None:
    for user in "abcdef":
        for n in range(2):
            await store.submit_job(NewJob(f"{user}{n}", user, "k", "{}", 2), max_queued=10)
    rows = await store.claim_jobs("w", want=5, limits=LIMITS, lease=600)
    assert len(rows) == 5
    held = await _gate(store)
    assert len(held) == 5
    for row in rows:  # the member is on the job and in its shard's index
        shard = store._user_shard(row.user_id)
        gm = await store._client.hget(store._keys.job(row.job_id, shard), "gm")
        assert gm in held
        assert await store._client.hget(f"{store._keys.jobs(shard)}gm", gm) == row.job_id
    await store.finish_job(rows[0].job_id, "w", "succeeded", None, None)
    assert len(await _gate(store)) == 4
    more = await store.claim_jobs("w", want=8, limits=LIMITS, lease=600)
    assert len(more) == 4 and len(await _gate(store)) == 8  # 8 running, no more
    assert await store.claim_jobs("w", want=1, limits=LIMITS, lease=600) == []


async def test_the_reaper_drops_stale_members_no_shard_holds(store: Any, clock: FakeClock) -> None:
    await store.submit_job(NewJob("j1", "u", "k", "{}", 2), max_queued=10)
    [row] = await store.claim_jobs("w", want=1, limits=LIMITS, lease=10 * GATE_STALE)
    # claimers that died between their reservation and their shard call left members
    old = clock.now() - GATE_STALE - 1
    await store._client.zadd(store._keys.job_gate(), {"dead:1": clock.now(), "dead:2": old})
    assert len(await _gate(store)) == 3
    await store.reap_jobs(limit=10)
    assert "dead:1" in await _gate(store)  # dead:2 was stale; dead:1 not yet
    assert len(await _gate(store)) == 2
    clock.advance(GATE_STALE + 1)
    assert await store.reap_jobs(limit=10) == []  # the job's lease is still good
    [kept] = await _gate(store)  # the running job's member stays, however old
    shard = store._user_shard("u")
    assert await store._client.hget(store._keys.job(row.job_id, shard), "gm") == kept


async def test_ids_stay_unique_across_shards(store: Any) -> None:
    from sessionward.errors import ConfigurationError

    users = ["u0", "u1", "u2", "u3", "u4", "u5"]
    homes = {store._user_shard(user) for user in users}
    assert len(homes) > 1
    await store.submit_job(NewJob("same", users[0], "k", "{}", 2), max_queued=10)
    other = next(user for user in users if store._user_shard(user) != store._user_shard("u0"))
    with pytest.raises(ConfigurationError, match="collision"):
        await store.submit_job(NewJob("same", other, "k", "{}", 2), max_queued=10)


async def test_wait_replicas_refuses_a_write_no_replica_confirmed(tmp_path: Path) -> None:
    """The test server has no replica: WAIT 1 confirms nothing, so the write is not
    acknowledged (it did run on the primary: WAIT does not undo it)."""
    url = f"{url_for('redis', tmp_path)}&wait_replicas=1&wait_timeout=0.05"
    store: Any = create_store(url)
    await store.open()
    try:
        scope = StateScope("user", "u", None)
        with pytest.raises(StorageUnavailable, match="0 of 1 replicas"):
            await store.put_state(scope, "doc", "1", expected_version=None)
        assert (await store.get_state(scope, "doc")).data == "1"  # reads are not waited on
    finally:
        await store.aclose()
