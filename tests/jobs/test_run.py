"""Running jobs: results, progress, failures, timeouts, the owner's state, and the events
that tell the owner about each change."""

from __future__ import annotations

from contextlib import aclosing

import anyio
import pytest

from sessionward import Settings
from sessionward.events import user_channel
from sessionward.jobs import Job
from sessionward.stores.records import StateScope
from sessionward.ward import Ward

from .helpers import FAST, running, status_is, until, worker_in

pytestmark = pytest.mark.anyio


async def finished(ward: Ward, user: str, job_id: str, deadline: float = 10.0) -> Job:
    await until(lambda: status_is(ward, user, job_id, "succeeded", "failed", "cancelled"),
                deadline, f"job {job_id} finishing")  # fmt: skip
    return await ward.jobs.get(user, job_id)


async def test_a_job_runs_and_succeeds(store_url: str) -> None:
    async with running(store_url, Settings(**FAST)) as ward:
        job = await ward.jobs.submit("alice", "sleep", {"seconds": 0.05, "steps": 2})
        done = await finished(ward, "alice", job.job_id)
        assert (done.status, done.progress, done.result, done.error) == (
            "succeeded", 1.0, {"slept": 0.05}, None,
        )  # fmt: skip
        assert done.attempts == 1
        assert done.created_at <= (done.started_at or 0) <= (done.finished_at or 0)


async def test_progress_only_rises_through_get_and_watch(store_url: str) -> None:
    async with running(store_url, Settings(**FAST)) as ward:
        job = await ward.jobs.submit("alice", "steps", {"seconds": 0.3})
        seen_get: list[float] = []

        async def poll() -> None:
            while True:
                current = await ward.jobs.get("alice", job.job_id)
                seen_get.append(current.progress)
                if current.finished:
                    return
                await anyio.sleep(0.02)  # sampling the job as a client would

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(poll)
            async with aclosing(ward.jobs.watch("alice", job.job_id)) as changes:
                watched = [(j.status, j.progress) async for j in changes]
        assert seen_get == sorted(seen_get)
        progress = [p for _, p in watched]
        assert progress == sorted(progress)
        assert watched[0] == ("queued", 0.0) or watched[0][0] == "running"
        assert watched[-1] == ("succeeded", 1.0)
        # the handler reported 0.2, 0.1, 0.5, 0.3, 0.8: watch saw the rises, never a fall
        assert {0.2, 0.5, 0.8} <= set(progress) and 0.1 not in progress and 0.3 not in progress


async def test_every_change_is_pushed_to_the_owner(store_url: str) -> None:
    async with running(store_url, Settings(**FAST)) as ward:
        assert ward.jobs.events is not None
        async with ward.jobs.events.subscribe(user_channel("alice")) as events:
            job = await ward.jobs.submit("alice", "sleep", {"seconds": 0.3, "steps": 3})
            pushed = []
            with anyio.fail_after(10):
                async for event in events:
                    assert event["type"] == "job" and event["job_id"] == job.job_id
                    pushed.append((event["status"], event["progress"]))
                    if event["status"] == "succeeded":
                        break
        statuses = [s for s, _ in pushed]
        assert statuses[0] == "queued" and statuses[-1] == "succeeded"
        assert "running" in statuses
        assert [p for _, p in pushed] == sorted(p for _, p in pushed)


async def test_a_crash_fails_the_job_without_details(store_url: str) -> None:
    async with running(store_url, Settings(**FAST)) as ward:
        job = await ward.jobs.submit("alice", "boom", {})
        done = await finished(ward, "alice", job.job_id)
        assert (done.status, done.error) == ("failed", "the job failed unexpectedly")
        assert done.finished_at is not None and done.result is None


async def test_a_job_error_gives_its_message(store_url: str) -> None:
    async with running(store_url, Settings(**FAST)) as ward:
        job = await ward.jobs.submit("alice", "refuse", {})
        done = await finished(ward, "alice", job.job_id)
        assert (done.status, done.error) == ("failed", "the input has no header line")


async def test_a_result_that_is_not_json_fails_the_job(store_url: str) -> None:
    async with running(store_url, Settings(**FAST)) as ward:
        job = await ward.jobs.submit("alice", "not_json", {})
        done = await finished(ward, "alice", job.job_id)
        assert done.status == "failed" and "not plain JSON" in (done.error or "")


@pytest.mark.parametrize("kind", ["slow", "slow_thread"])
async def test_a_job_over_its_kinds_timeout_fails(store_url: str, kind: str) -> None:
    async with running(store_url, Settings(**FAST)) as ward:
        job = await ward.jobs.submit("alice", kind, {"seconds": 30})
        done = await finished(ward, "alice", job.job_id)
        assert (done.status, done.error) == ("failed", "the job took longer than 0.3 s")
        assert done.started_at is not None and done.finished_at is not None
        assert 0.3 <= done.finished_at - done.started_at < 2.0


@pytest.mark.parametrize("kind", ["save", "save_thread"])
async def test_results_land_in_the_owners_state(store_url: str, kind: str) -> None:
    async with running(store_url, Settings(**FAST)) as ward:
        job = await ward.jobs.submit("alice", kind, {})
        done = await finished(ward, "alice", job.job_id)
        assert done.status == "succeeded"
        name = "last_result" if kind == "save" else "thread_result"
        doc = await ward.state.get(StateScope("user", "alice"), name)
        assert doc is not None and doc.data["job"] == job.job_id
        assert await ward.state.get(StateScope("user", "bob"), name) is None
        if kind == "save_thread":
            assert done.result == {"saved": {"job": job.job_id}}


async def test_a_process_job_runs_in_a_pool_process(store_url: str) -> None:
    async with running(store_url, Settings(**FAST)) as ward:
        job = await ward.jobs.submit("alice", "spin_process", {"seconds": 0.01})
        done = await finished(ward, "alice", job.job_id, deadline=60)
        assert (done.status, done.result) == ("succeeded", {"slept": 0.01})


async def test_a_kind_this_instance_lacks_fails_the_job(store_url: str) -> None:
    async with running(store_url, Settings(**FAST), worker=False) as ward:
        job = await ward.jobs.submit("alice", "spin", {"seconds": 0.01})
        ward.jobs.kinds.pop("spin")  # as on an instance that does not know it
        async with worker_in(ward):
            done = await finished(ward, "alice", job.job_id)
        assert (done.status, done.error) == ("failed", "no worker knows the job kind spin")
