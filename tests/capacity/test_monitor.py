"""The monitor on every backend: samples from the store, the deployment view of two
instances on one store, and admission decided from the store's figures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from sessionward import FakeClock, Settings, open_ward
from sessionward.capacity import CapacityMonitor, MachineFigures
from sessionward.jobs.builtin import SLEEP
from sessionward.testing import wait_until_async
from sessionward.ward import Ward
from tests.conftest import SHARED_BACKENDS

pytestmark = pytest.mark.anyio
FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost": 8, "argon2_parallelism": 1}


class StaticProbe:
    """Machine figures chosen by the test."""

    def __init__(self, cpu: float = 10.0, memory: int = 10) -> None:
        self.cpu, self.memory = cpu, memory

    def read(self) -> MachineFigures:
        return MachineFigures(self.cpu, self.cpu, 2.0, self.memory, 100, "cgroup", 1, 1)


async def _ward(url: str, clock: FakeClock, **settings: object) -> AsyncIterator[Ward]:
    values = {**FAST_ARGON2, "capacity_sample_interval": 5.0, **settings}
    async with open_ward(url, settings=Settings(**values), clock=clock, sweep=False) as ward:
        yield ward


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def ward(store_url: str, clock: FakeClock) -> AsyncIterator[Ward]:
    async for ward in _ward(store_url, clock, capacity_max_active_users=2,
                            capacity_max_queued_jobs=2):  # fmt: skip
        ward.capacity._probe = StaticProbe()
        yield ward


async def test_a_sample_reads_the_deployment_from_the_store(ward: Ward) -> None:
    for user in ("alice", "alice", "bob"):
        await ward.sessions.create(user)
    ward.jobs.register(SLEEP)
    await ward.jobs.submit("alice", "sleep", {"seconds": 1})
    ward.capacity.activity.request(0.010)
    sample = await ward.capacity.sample()
    assert (sample.active_sessions, sample.active_users) == (3, 2)
    assert (sample.jobs_queued, sample.jobs_running) == (1, 0)
    assert sample.store_latency is not None and sample.errors == ()
    assert (sample.cpu_used, sample.memory_percent, sample.memory_source) == (10.0, 10.0, "cgroup")
    assert sample.latency_p99 == 0.010 and sample.request_rate > 0
    assert ward.capacity.latest() == sample
    assert [s.instance_id for s in (await ward.capacity.instances()).instances] == [
        ward.capacity.instance_id
    ]


async def test_two_instances_see_each_other_and_a_dead_one_drops_out(
    ward: Ward, clock: FakeClock
) -> None:
    other = CapacityMonitor(ward.store, ward.settings, clock=clock, instance_id="b-other",
                            probe=StaticProbe())  # fmt: skip
    ward.capacity.instance_id = "a-this"
    await ward.capacity.sample()
    await other.sample()
    for monitor in (ward.capacity, other):
        view = await monitor.instances()
        assert [s.instance_id for s in view.instances] == ["a-this", "b-other"]
    # "b-other" stops; "a-this" samples on. It still lists b after two missed samples,
    # not after the third.
    seen = []
    for _ in range(3):
        clock.advance(ward.capacity.interval)
        await ward.capacity.sample()
        view = await ward.capacity.instances()
        seen.append([s.instance_id for s in view.instances])
    assert seen == [["a-this", "b-other"], ["a-this", "b-other"], ["a-this"]]


async def test_active_users_limit_refuses_only_new_users(ward: Ward) -> None:
    alice = await ward.users.create("alice", "password-alice-1")
    bob = await ward.users.create("bob", "password-bob-1")
    carol = await ward.users.create("carol", "password-carol-1")
    root = await ward.users.create("root", "password-root-1", roles=("admin",))
    assert (await ward.capacity.admit("login", alice.user_id)).admitted
    await ward.sessions.create(alice.user_id)
    assert (await ward.capacity.admit("login", bob.user_id)).admitted
    await ward.sessions.create(bob.user_id)
    refused = await ward.capacity.admit("login", carol.user_id)
    assert (refused.admitted, refused.reason, refused.retry_after) == (False, "active_users", 5.0)
    assert not (await ward.capacity.admit("login", None)).admitted  # unknown: not active
    assert (await ward.capacity.admit("login", alice.user_id)).admitted  # already in
    assert (await ward.capacity.admit("login", root.user_id)).reason == "admin"
    assert (ward.capacity.admission.admitted, ward.capacity.admission.refused) == (4, 2)


async def test_an_active_user_who_leaves_frees_a_place_after_the_window(
    ward: Ward, clock: FakeClock
) -> None:
    users = [await ward.users.create(n, f"password-{n}-1") for n in ("alice", "bob", "carol")]
    for user in users[:2]:
        await ward.sessions.create(user.user_id)
    assert not (await ward.capacity.admit("login", users[2].user_id)).admitted
    clock.advance(ward.settings.capacity_active_window + 1)  # nobody seen for 5 minutes
    assert (await ward.capacity.admit("login", users[2].user_id)).admitted


async def test_queued_jobs_limit_with_hysteresis(ward: Ward) -> None:
    ward.jobs.register(SLEEP)
    first = await ward.jobs.submit("alice", "sleep", {"seconds": 1})
    await ward.jobs.submit("bob", "sleep", {"seconds": 1})
    refused = await ward.capacity.admit("job", "carol")
    assert (refused.admitted, refused.reason) == (False, "queued_jobs")
    await ward.jobs.cancel("alice", first.job_id)
    assert (await ward.capacity.admit("job", "carol")).admitted  # 1 queued: below 2 * 0.9
    assert (await ward.capacity.admit("websocket", "carol")).admitted  # not a job


async def test_resource_gates_follow_the_latest_sample(ward: Ward, store_url: str) -> None:
    async for hot in _ward(store_url, FakeClock(), capacity_max_cpu=80.0):
        probe = StaticProbe(cpu=85.0)
        hot.capacity._probe = probe
        await hot.capacity.sample()
        decision = await hot.capacity.admit("websocket", "alice")
        assert (decision.admitted, decision.reason) == (False, "cpu")
        probe.cpu = 75.0  # below the line, above the release point (72)
        await hot.capacity.sample()
        assert not (await hot.capacity.admit("job", "alice")).admitted
        probe.cpu = 70.0
        await hot.capacity.sample()
        assert (await hot.capacity.admit("job", "alice")).admitted


@pytest.mark.parametrize("backend", SHARED_BACKENDS)  # memory answers without waiting
async def test_run_samples_on_through_store_timeouts(store_url: str) -> None:
    settings = Settings(capacity_sample_interval=0.05, capacity_store_timeout=1e-9)
    async with open_ward(store_url, settings=settings, sweep=False) as ward:
        ward.capacity._probe = StaticProbe()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(ward.capacity.run)
            await wait_until_async(lambda: _true(len(ward.capacity.history) >= 3),
                                   what="three samples")  # fmt: skip
            tasks.cancel_scope.cancel()
    sample = ward.capacity.latest()
    assert sample is not None and sample.store_latency is None
    assert any("no answer" in e for e in sample.errors)


async def _true(value: bool) -> bool:
    return value


@pytest.mark.parametrize(
    ("backend", "option"), [("redis", "max_connections=1"), ("postgresql", "pool_min=1&pool_max=1")]
)
async def test_pool_waits_are_measured(store_url: str, option: str) -> None:
    async with open_ward(f"{store_url}&{option}", sweep=False) as ward:
        ward.capacity._probe = StaticProbe()
        await ward.capacity.sample()
        async with anyio.create_task_group() as tasks:
            for n in range(20):  # one connection: most of them wait for it
                tasks.start_soon(ward.sessions.create, f"u{n}")
        sample = await ward.capacity.sample()
        assert sample.pool_wait > 0 and sample.pool_max == 1
        assert ward.store.pool_stats().wait_time >= sample.pool_wait
