"""Cancelling: a queued job at once; a running job, async, in a thread, in a pool process or
on another instance, within 2 s (the figure printed is the time from the cancel call to the
job's ``cancelled`` status in the store).

These use the default heartbeat (1 s): on SQLite, with no events between processes, the
heartbeat is how another instance hears of a cancel."""

from __future__ import annotations

import time
from functools import partial

import pytest

from sessionward import Settings
from sessionward.ward import Ward

from .helpers import (
    FAST,
    running,
    start_worker_process,
    status_is,
    stop_worker_process,
    until,
    worker_in,
)
from .test_limits import shared_url  # noqa: F401 (a fixture)

pytestmark = pytest.mark.anyio

CANCEL_SETTINGS = {**FAST, "job_heartbeat": 1.0, "job_lease": 5.0}
WITHIN = 2.0


async def cancel_and_time(ward: Ward, user: str, job_id: str) -> float:
    began = time.monotonic()
    job = await ward.jobs.cancel(user, job_id)
    assert job.status in ("cancelling", "cancelled")
    await until(lambda: status_is(ward, user, job_id, "cancelled", "succeeded", "failed"),
                10, "the cancel")  # fmt: skip
    took = time.monotonic() - began
    done = await ward.jobs.get(user, job_id)
    assert done.status == "cancelled" and done.finished_at is not None and done.error is None
    print(f"cancel latency: {took * 1000:.0f} ms")
    return took


async def test_a_queued_job_is_cancelled_at_once(store_url: str) -> None:
    async with running(store_url, Settings(**CANCEL_SETTINGS), worker=False) as ward:
        job = await ward.jobs.submit("alice", "spin", {"seconds": 0.01})
        cancelled = await ward.jobs.cancel("alice", job.job_id)
        assert cancelled.status == "cancelled" and cancelled.finished_at is not None
        async with worker_in(ward):
            other = await ward.jobs.submit("alice", "spin", {"seconds": 0.01})
            await until(lambda: status_is(ward, "alice", other.job_id, "succeeded"))
        assert (await ward.jobs.get("alice", job.job_id)).started_at is None  # it never ran


@pytest.mark.parametrize("kind", ["spin", "spin_thread", "spin_process"])
async def test_a_running_job_is_cancelled_within_2_s(store_url: str, kind: str) -> None:
    async with running(store_url, Settings(**CANCEL_SETTINGS)) as ward:
        job = await ward.jobs.submit("alice", kind, {"seconds": 60})
        await until(lambda: status_is(ward, "alice", job.job_id, "running"), 60, "the start")
        assert await cancel_and_time(ward, "alice", job.job_id) < WITHIN
        # the slot is free again
        again = await ward.jobs.submit("alice", "spin", {"seconds": 0.01})
        await until(lambda: status_is(ward, "alice", again.job_id, "succeeded"))
        assert (await ward.jobs.counts()).running == 0


async def test_a_job_on_another_instance_is_cancelled_within_2_s(shared_url: str) -> None:  # noqa: F811
    proc, pipe = start_worker_process(shared_url, CANCEL_SETTINGS)
    try:
        async with running(shared_url, Settings(**CANCEL_SETTINGS), worker=False) as ward:
            for kind in ("spin", "spin_thread"):
                job = await ward.jobs.submit("alice", kind, {"seconds": 60})
                started = partial(status_is, ward, "alice", job.job_id, "running")
                await until(started, 30, "the other instance starting the job")
                assert await cancel_and_time(ward, "alice", job.job_id) < WITHIN
    finally:
        stop_worker_process(proc, pipe)


async def test_cancelling_a_finished_job_changes_nothing(store_url: str) -> None:
    async with running(store_url, Settings(**CANCEL_SETTINGS)) as ward:
        job = await ward.jobs.submit("alice", "spin", {"seconds": 0.01})
        await until(lambda: status_is(ward, "alice", job.job_id, "succeeded"))
        assert (await ward.jobs.cancel("alice", job.job_id)).status == "succeeded"
