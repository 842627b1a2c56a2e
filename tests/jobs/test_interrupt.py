"""A worker that dies (SIGKILL) or stops in the middle of a job: the job keeps its claim
until its lease runs out, then any worker's reaper marks it ``interrupted``, it runs again
(once: ``max_attempts`` is 2) and finishes, and its owner's slot is free again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
import pytest

from sessionward import Settings
from sessionward.events import Subscription, user_channel
from sessionward.ward import Ward

from .helpers import FAST, row, running, start_worker_process, status_is, until, worker_in
from .test_limits import shared_url  # noqa: F401 (a fixture)

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def statuses_of(ward: Ward, user: str, job_id: str) -> AsyncIterator[list[str]]:
    """The statuses pushed for one job while the block runs, in order."""
    seen: list[str] = []
    assert ward.jobs.events is not None

    async def collect(events: Subscription) -> None:
        async for event in events:
            if event.get("job_id") == job_id and (not seen or seen[-1] != event["status"]):
                seen.append(str(event["status"]))  # changes of status only

    async with (
        ward.jobs.events.subscribe(user_channel(user)) as events,
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(collect, events)
        yield seen
        tasks.cancel_scope.cancel()


def assert_rerun(seen: list[str]) -> None:
    """Pushed: ``interrupted``, then (unless the second attempt ended at once and its push
    was folded into the last) ``running``, then ``succeeded``. A push of the first attempt
    sent before the worker died may arrive before them."""
    after = seen[seen.index("interrupted") :]
    assert after in (["interrupted", "running", "succeeded"], ["interrupted", "succeeded"]), seen


async def held_by(ward: Ward, user: str, job_id: str, worker_id: str) -> bool:
    found = await row(ward, user, job_id)
    return found.status == "running" and found.worker_id == worker_id


async def check_slots_are_free(ward: Ward, user: str) -> None:
    """All of the user's slots can be used again: three jobs run at once."""
    assert (await ward.jobs.counts()).running == 0
    jobs = [await ward.jobs.submit(user, "spin", {"seconds": 1.0}) for _ in range(3)]

    async def all_running() -> bool:
        return all([await status_is(ward, user, j.job_id, "running") for j in jobs])

    await until(all_running, 10, "three jobs of the user running at once")
    for job in jobs:
        await until(partial(status_is, ward, user, job.job_id, "succeeded"))


async def test_a_stopped_workers_job_runs_again(store_url: str) -> None:
    async with running(store_url, Settings(**FAST), worker=False) as ward:
        job = await ward.jobs.submit("alice", "hang_once", {})
        async with statuses_of(ward, "alice", job.job_id) as seen:
            async with worker_in(ward) as first:
                await until(partial(held_by, ward, "alice", job.job_id, first.worker_id))
            # the worker stopped without finishing it: it holds its claim until the lease ends
            assert (await ward.jobs.get("alice", job.job_id)).status == "running"
            async with worker_in(ward):
                waited = await until(partial(status_is, ward, "alice", job.job_id, "succeeded"),
                                     10, "the job running again")  # fmt: skip
                assert waited < FAST["job_lease"] + 2
                done = await ward.jobs.get("alice", job.job_id)
                assert (done.attempts, done.result, done.progress) == (2, {"attempt": 2}, 1.0)
                await check_slots_are_free(ward, "alice")
        assert_rerun(seen)


async def test_a_job_whose_attempts_are_spent_fails(store_url: str) -> None:
    async with running(store_url, Settings(**FAST), worker=False) as ward:
        job = await ward.jobs.submit("alice", "hang_once_1", {})
        async with worker_in(ward) as first:
            await until(partial(held_by, ward, "alice", job.job_id, first.worker_id))
        async with worker_in(ward):
            await until(partial(status_is, ward, "alice", job.job_id, "failed"), 10)
        done = await ward.jobs.get("alice", job.job_id)
        assert done.error == "the job's worker stopped too many times"
        assert (await ward.jobs.counts()).running == 0


async def test_a_killed_worker_process_job_runs_again(shared_url: str) -> None:  # noqa: F811
    proc, _ = start_worker_process(shared_url, FAST)
    try:
        async with running(shared_url, Settings(**FAST), worker=False) as ward:
            job = await ward.jobs.submit("alice", "hang_once", {})
            await until(partial(status_is, ward, "alice", job.job_id, "running"), 30)
            killed_worker = (await row(ward, "alice", job.job_id)).worker_id
            proc.kill()  # SIGKILL: no clean-up of any kind
            proc.join(10)
            async with statuses_of(ward, "alice", job.job_id) as seen, worker_in(ward) as mine:
                await until(partial(status_is, ward, "alice", job.job_id, "succeeded"), 15,
                            "the job running again")  # fmt: skip
                done = await row(ward, "alice", job.job_id)
                assert (done.attempts, done.worker_id) == (2, mine.worker_id)
                assert done.worker_id != killed_worker
                await check_slots_are_free(ward, "alice")
            # (a push of the first attempt, sent before the kill, may still arrive first)
            assert_rerun(seen)
    finally:
        if proc.is_alive():
            proc.kill()
