"""A worker that dies (SIGKILL) in the middle of a job: the job keeps its claim until its
lease runs out, then any worker's reaper marks it ``interrupted``, it runs again (once:
``max_attempts`` is 2) and finishes, and its owner's slot is free again. A worker that stops
cleanly hands its jobs back at once, without using up an attempt."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
import pytest

from sessionward import Settings
from sessionward.events import Subscription, user_channel
from sessionward.ward import Ward

from .helpers import (
    FAST,
    LET_GO,
    has_run,
    row,
    running,
    start_worker_process,
    status_is,
    until,
    worker_in,
)
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


@pytest.mark.parametrize("kind", ["hang_first_1", "hang_first_thread"])
async def test_a_clean_stop_hands_its_job_back_at_once(store_url: str, kind: str) -> None:
    """``max_attempts=1`` survives a restart: the stopped worker's job is queued again the
    moment the worker has stopped (a 30 s lease is not waited out) and runs to the end on
    the next worker, on its first attempt."""
    async with running(store_url, Settings(**{**FAST, "job_lease": 30.0}), worker=False) as ward:
        job = await ward.jobs.submit("alice", kind, {})
        async with statuses_of(ward, "alice", job.job_id) as seen:
            async with worker_in(ward):
                await until(partial(has_run, job.job_id), 10, "the handler starting")
            back = await row(ward, "alice", job.job_id)
            assert (back.status, back.attempts, back.worker_id, back.lease_expires_at) == (
                "queued", 0, None, None,
            )  # fmt: skip
            assert (await ward.jobs.counts()).running == 0
            async with worker_in(ward) as second:
                waited = await until(partial(status_is, ward, "alice", job.job_id, "succeeded"),
                                     10, "the job running again")  # fmt: skip
                assert waited < 5  # far less than the lease
                done = await row(ward, "alice", job.job_id)
                assert (done.attempts, done.result, done.worker_id) == (
                    1, '{"attempt":1}', second.worker_id,
                )  # fmt: skip
                await check_slots_are_free(ward, "alice")

            async def pushed() -> bool:
                return "succeeded" in seen

            await until(pushed, 5, "the last push")
        assert seen[seen.index("queued") + 1 :][-1:] == ["succeeded"], seen


async def test_a_thread_that_does_not_return_keeps_its_job_until_the_lease(
    store_url: str,
) -> None:
    """A thread cannot be interrupted: a clean stop waits half of job_release_timeout for it,
    then leaves its job to the lease, so it never runs twice at once."""
    settings = Settings(**{**FAST, "job_release_timeout": 0.4})
    LET_GO.clear()
    async with running(store_url, settings, worker=False) as ward:
        job = await ward.jobs.submit("alice", "stubborn_thread", {})
        async with worker_in(ward) as first:
            await until(partial(has_run, job.job_id), 10, "the handler starting")
            stopping = anyio.current_time()
        assert anyio.current_time() - stopping < 2  # bounded by the setting
        kept = await row(ward, "alice", job.job_id)
        assert (kept.status, kept.worker_id, kept.attempts) == ("running", first.worker_id, 1)
        LET_GO.set()  # the first run ends; it is not this worker's to finish any more
        async with worker_in(ward):
            await until(partial(status_is, ward, "alice", job.job_id, "succeeded"), 10)
        done = await row(ward, "alice", job.job_id)
        assert (done.attempts, done.result) == (2, '{"attempt":2}')  # reaped, then run again


async def test_a_cancelling_job_of_a_stopping_worker_ends_cancelled(store_url: str) -> None:
    async with running(store_url, Settings(**{**FAST, "job_lease": 30.0}), worker=False) as ward:
        job = await ward.jobs.submit("alice", "hang_first_1", {})
        async with worker_in(ward) as first:
            await until(partial(held_by, ward, "alice", job.job_id, first.worker_id))
            await ward.store.cancel_job("alice", job.job_id)  # the worker has not heard yet
        done = await row(ward, "alice", job.job_id)
        assert (done.status, done.worker_id) == ("cancelled", None)
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
