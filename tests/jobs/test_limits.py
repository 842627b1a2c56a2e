"""Slot limits and fairness: many users' jobs submitted at once, run by workers in this
process and in two worker processes sharing the store.

Every job of the recording kind logs its start and end (the running set at every
transition) and reads the store's counts as it starts. Jobs are all queued before the
workers start, so the order of the queue is known: FIFO within a user, and no user waits
behind another user's whole queue (with 10 users and 8 slots, every user's first job
starts before any user's second one).
"""

from __future__ import annotations

import os
from functools import partial

import pytest

from sessionward import Settings
from sessionward.jobs import Job
from sessionward.testing.races import race
from sessionward.ward import Ward
from tests.conftest import SHARED_BACKENDS

from .helpers import (
    FAST,
    Recorder,
    go,
    peaks,
    row,
    running,
    start_worker_process,
    stop_worker_process,
    until,
    worker_in,
)

pytestmark = pytest.mark.anyio

FULL = os.environ.get("SESSIONWARD_STRESS") == "1"
USERS, PER_USER, SECONDS = (40, 20, 0.02) if FULL else (10, 10, 0.1)
PER_USER_RUNNING, RUNNING = 3, 8
SETTINGS = {**FAST, "jobs_per_user_running": PER_USER_RUNNING, "jobs_running": RUNNING,
            "jobs_per_user_queued": PER_USER}  # fmt: skip
DEADLINE = 120.0 if FULL else 60.0


@pytest.fixture(params=SHARED_BACKENDS)
def shared_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    from tests.conftest import url_for

    return url_for(str(request.param), tmp_path)  # type: ignore[arg-type]


async def submit_all(ward: Ward) -> list[tuple[str, Job]]:
    """Every user's jobs at once (each user's in order: a user submits one after another)."""
    users = [f"user{u}" for u in range(USERS)]
    contenders = [partial(ward.jobs.submit, user, "record", {"seconds": SECONDS})
                  for user in users for _ in range(PER_USER)]  # fmt: skip
    jobs = await race(contenders)
    failures = [j for j in jobs if isinstance(j, Exception)]
    assert not failures, failures[:3]
    return [(job_user, job) for job_user, job in zip(
        [u for u in users for _ in range(PER_USER)], jobs, strict=True)]  # fmt: skip


async def all_done(ward: Ward) -> bool:
    counts = await ward.jobs.counts()
    return (counts.running, counts.queued) == (0, 0)


async def check_schedule(ward: Ward, jobs: list[tuple[str, Job]]) -> None:
    rows = [await row(ward, user, job.job_id) for user, job in jobs]
    assert [r.status for r in rows] == ["succeeded"] * len(rows)
    by_user: dict[str, list[float]] = {}
    for r in sorted(rows, key=lambda r: r.seq):
        assert r.started_at is not None
        by_user.setdefault(r.user_id, []).append(r.started_at)
    for user, starts in by_user.items():
        assert starts == sorted(starts), f"{user}'s jobs did not start in the order submitted"
    firsts = {user: starts[0] for user, starts in by_user.items()}
    seconds = {user: starts[1] for user, starts in by_user.items()}
    late = [(v, u) for v in firsts for u in seconds if v != u and firsts[v] > seconds[u]]
    assert not late, f"users waited while others started their second job: {late[:5]}"


def check_peaks(recorder_log: list[tuple[str, str, str, float]], store_running: list[int],
                user_running: list[int]) -> None:  # fmt: skip
    overall, per_user = peaks(recorder_log)
    assert overall == RUNNING, f"at most {overall} jobs ran at once (the limit is {RUNNING})"
    assert max(per_user.values()) <= PER_USER_RUNNING, per_user
    assert len(per_user) == USERS
    assert len(store_running) == USERS * PER_USER
    assert max(store_running) <= RUNNING
    assert max(user_running) <= PER_USER_RUNNING


@pytest.mark.stress
async def test_limits_fifo_and_fairness_in_one_process(store_url: str) -> None:
    recorders: list[Recorder] = []

    def recorder(ward: Ward) -> list:  # type: ignore[type-arg]
        recorders.append(Recorder(ward))
        return [recorders[0].kind()]

    settings = Settings(**SETTINGS)
    async with running(store_url, settings, extra=recorder, worker=False) as ward:
        jobs = await submit_all(ward)
        # two workers, 12 slots between them: the store's limit of 8 must hold
        async with worker_in(ward, slots=6), worker_in(ward, slots=6):
            await until(lambda: all_done(ward), DEADLINE, "every job finishing")
        rec = recorders[0]
        assert len(rec.log) == 2 * USERS * PER_USER
        check_peaks(rec.log, rec.store_running, rec.user_running)
        await check_schedule(ward, jobs)


@pytest.mark.stress
async def test_limits_hold_across_two_worker_processes(shared_url: str) -> None:
    settings = Settings(**SETTINGS)
    workers = [start_worker_process(shared_url, SETTINGS, slots=6, record=True, hold=True)
               for _ in range(2)]  # fmt: skip
    try:
        async with running(shared_url, settings, extra=lambda w: [Recorder(w).kind()],
                           worker=False) as ward:  # fmt: skip
            jobs = await submit_all(ward)
            for _, pipe in workers:
                go(pipe)  # both workers start with every job queued
            await until(lambda: all_done(ward), DEADLINE, "every job finishing")
            results = [stop_worker_process(proc, pipe) for proc, pipe in workers]
            logs = [entry for log, _, _ in results for entry in log]
            assert all(log for log, _, _ in results), "a worker process ran no job"
            check_peaks(logs, [n for _, counts, _ in results for n in counts],
                        [n for _, _, mine in results for n in mine])  # fmt: skip
            await check_schedule(ward, jobs)
    finally:
        for proc, _ in workers:
            if proc.is_alive():
                proc.kill()
