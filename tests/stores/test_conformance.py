"""The backend conformance suite, on every backend against real servers, and on a local
Redis Cluster (``redis-cluster``: 6 processes, see tests/cluster.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot

from sessionward import FakeClock
from sessionward.stores.records import JobLimits
from sessionward.stores.redis.connection import SCRIPTS, RedisConnection
from sessionward.testing import (
    BudgetConformance,
    BudgetProcessConformance,
    BudgetRaceConformance,
    CapacityConformance,
    JobProcessConformance,
    JobStoreConformance,
    LimitConformance,
    ProcessRaceConformance,
    RaceConformance,
    RefreshConformance,
    SessionConformance,
    StateConformance,
    UserConformance,
)
from sessionward.testing.jobs import claim, submit
from sessionward.ward import Ward
from tests.cluster import Cluster
from tests.conftest import BACKENDS, SHARED_BACKENDS, url_for

SHARDS = 4

CONFORMANCE_BACKENDS = [*BACKENDS, "redis-cluster"]
PROCESS_BACKENDS = [*SHARED_BACKENDS, "redis-cluster"]


#: every script call the conformance suite made on the cluster: name -> slots of its KEYS
CLUSTER_CALLS: dict[str, list[set[int]]] = {}


@pytest.fixture(params=CONFORMANCE_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _record_cluster_scripts(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """On the cluster, note the slots of every script call's KEYS (TestScriptSlots)."""
    if "backend" not in request.fixturenames or request.getfixturevalue("backend") != (
        "redis-cluster"
    ):
        yield
        return
    original = RedisConnection._script

    async def recorded(self: RedisConnection, name: str, keys: list[str], *a: Any, **k: Any) -> Any:
        CLUSTER_CALLS.setdefault(name, []).append({key_slot(key.encode()) for key in keys})
        return await original(self, name, keys, *a, **k)

    monkeypatch.setattr(RedisConnection, "_script", recorded)
    yield


class TestSessions(SessionConformance):
    pass


class TestState(StateConformance):
    pass


class TestRaces(RaceConformance):
    pass


class TestUsers(UserConformance):
    pass


class TestRefresh(RefreshConformance):
    pass


class TestLimits(LimitConformance):
    pass


class TestProcessRaces(ProcessRaceConformance):
    @pytest.fixture(params=PROCESS_BACKENDS)
    def backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)


class TestBudgets(BudgetConformance):
    pass


class TestBudgetRaces(BudgetRaceConformance):
    pass


class TestBudgetProcesses(BudgetProcessConformance):
    @pytest.fixture(params=PROCESS_BACKENDS)
    def backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)


class TestJobStores(JobStoreConformance):
    pass


class TestJobProcesses(JobProcessConformance):
    @pytest.fixture(params=PROCESS_BACKENDS)
    def backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)


class TestCapacity(CapacityConformance):
    pass


class _OnShardedQueues:
    """The job suites on the cluster with the job queues over 4 hash tags (job_shards=4)."""

    @pytest.fixture(params=["redis-cluster"])
    def backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def store_url(self, backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
        request.getfixturevalue("redis_cluster")
        return f"{url_for(backend, tmp_path)}&job_shards={SHARDS}"


class TestShardedJobStores(_OnShardedQueues, JobStoreConformance):
    """The same, but for the order across users: ``fair_order`` holds within a shard, and a
    claim takes from the shards in turn (docs/stores.md), so two cases say what holds."""

    async def test_claims_are_fair_fifo_and_bounded(self, ward: Ward, clock: FakeClock) -> None:
        await submit(ward.store, "a", 5)
        await submit(ward.store, "b", 1)
        claimed = await claim(ward.store, limits=JobLimits(per_user=3, overall=4))
        assert sorted(claimed) == ["a-job0", "a-job1", "a-job2", "b-job0"]
        assert [job for job in claimed if job.startswith("a")] == ["a-job0", "a-job1", "a-job2"]
        assert await claim(ward.store) == []  # a has 3 running; b has nothing waiting
        counts = await ward.store.job_counts()
        assert (counts.running, counts.queued) == (4, 2)

    async def test_idle_users_take_turns(self, ward: Ward, clock: FakeClock) -> None:
        store, limits = ward.store, JobLimits(per_user=3, overall=2)
        for user in "abc":
            await submit(store, user, 3)
        started = await claim(store, limits=limits)
        assert len(started) == 2 and await claim(store, limits=limits) == []
        for _ in range(4):  # each finish frees one slot, which the next claim takes
            clock.advance(1)
            assert await store.finish_job(started.pop(0), "w1", "succeeded", "1", None)
            [new] = await claim(store, limits=limits)
            started.append(new)
        assert (await store.job_counts()).running == 2

    async def test_a_released_job_keeps_its_place(self, ward: Ward) -> None:
        store, one = ward.store, JobLimits(per_user=1, overall=8)
        await submit(store, "a", 3)
        assert await claim(store, limits=one) == ["a-job0"]
        await store.release_jobs("w1", ["a-job0"])
        assert await claim(store, limits=one, worker="w2") == ["a-job0"]  # not a-job1
        await store.release_jobs("w2", ["a-job0"])
        await submit(store, "b", 1)
        assert sorted(await claim(store, limits=JobLimits(per_user=1, overall=2))) == [
            "a-job0", "b-job0",
        ]  # fmt: skip


class TestShardedJobProcesses(_OnShardedQueues, JobProcessConformance):
    pass


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_keys_in_one_slot(script: str, redis_cluster: Cluster) -> None:
    """Every script the suite ran on the cluster declared keys of one slot in every call
    (the server refused any undeclared key of another slot: the suite passed). It runs
    after the cluster's conformance classes above, whose calls are its evidence."""
    calls = CLUSTER_CALLS.get(script)
    assert calls, f"{script} never ran on the cluster: run this module's redis-cluster cases"
    assert all(len(slots) == 1 for slots in calls), f"{script} spans slots: {calls}"
