"""Jobs through the blocking API: submits from many threads against the queue bound, and a
worker on the SyncWard's own event loop, on every backend."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest

from sessionward import Settings, SyncWard
from sessionward.errors import JobLimitExceeded
from sessionward.jobs.builtin import BUILTIN
from sessionward.testing import wait_until

from .helpers import FAST

THREADS, EACH, QUEUED = 12, 5, 20


def submit_from_threads(ward: SyncWard) -> list[str]:
    """60 submits of one user from 12 threads released together; the ids accepted."""
    gate = Barrier(THREADS)

    def submitter(_: int) -> list[str]:
        gate.wait()
        accepted = []
        for _ in range(EACH):
            with contextlib.suppress(JobLimitExceeded):
                accepted.append(ward.jobs.submit("alice", "sleep", {"seconds": 0.01}).job_id)
        return accepted

    with ThreadPoolExecutor(THREADS) as pool:
        return [job for batch in pool.map(submitter, range(THREADS)) for job in batch]


def test_threads_fill_the_queue_exactly_and_the_worker_runs_them(store_url: str) -> None:
    settings = Settings(**FAST, jobs_per_user_queued=QUEUED)
    with SyncWard(store_url, settings=settings, sweep=False) as ward:
        for kind in BUILTIN:
            ward.jobs.register(kind)
        accepted = submit_from_threads(ward)  # no worker yet: every job waits
        assert len(accepted) == len(set(accepted)) == QUEUED
        assert ward.jobs.counts().queued == QUEUED
        ward.start_job_worker()
        with pytest.raises(RuntimeError):
            ward.start_job_worker()
        idle = lambda: (c := ward.jobs.counts()).running == c.queued == 0  # noqa: E731
        wait_until(idle, timeout=60, what="every job ending")
        assert [ward.jobs.get("alice", j).status for j in accepted] == ["succeeded"] * QUEUED
        assert {j.job_id for j in ward.jobs.list("alice")} == set(accepted)
        assert [k["kind"] for k in ward.jobs.describe()] == [k.name for k in BUILTIN]
