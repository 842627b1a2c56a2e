"""Process faults under load: two service instances on one store (a SQLite file, Redis,
PostgreSQL), mixed traffic over both, one SIGKILLed mid-run.

The other instance keeps serving with no failure; every acknowledged write, charge, login
and job is there afterwards; the killed instance's running jobs run again once their lease
is out, once more and no more, and none is lost.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import anyio
import httpx
import pytest

from sessionward import open_ward
from sessionward.testing import wait_until
from tests.conftest import SHARED_BACKENDS, url_for
from tests.reliability.checks import clean_log, members
from tests.reliability.conftest import Figures, size
from tests.reliability.traffic import (
    SHORT_LEASES,
    TRAFFIC_SETTINGS,
    Member,
    Traffic,
    check_acknowledged,
    sign_up,
)
from tests.service.server import Server, start

USERS = int(size(4, 12))
BEFORE, AFTER = int(size(100, 2000)), int(size(150, 2000))  # successes before/after the kill
HELD_JOBS = 3  # long jobs running on the instance that is killed (longer than lease + kill)
HELD_SECONDS = size(5, 60)
LEASE = float(SHORT_LEASES["SESSIONWARD_JOB_LEASE"])
DOOMED_ERRORS = {"ConnectError", "ReadError", "RemoteProtocolError", "WriteError"}


def _instance(store_url: str, workdir: Path) -> Server:
    workdir.mkdir()
    return start(store_url, workdir, **TRAFFIC_SETTINGS, **SHORT_LEASES)


def _job_status(url: str, member: Member, job_id: str) -> str:
    got = httpx.get(f"{url}/v1/jobs/{job_id}", headers=member.auth, timeout=10)
    assert got.status_code == 200, got.text
    return str(got.json()["status"])


def _attempts(store_url: str, jobs: list[tuple[str, str]]) -> list[int]:
    async def read() -> list[int]:
        async with open_ward(store_url, sweep=False) as ward:
            rows = [await ward.store.get_job(user, job) for user, job in jobs]
            return [row.attempts for row in rows if row is not None]

    return anyio.run(read)


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_an_instance_killed_under_load(backend: str, tmp_path: Path, figures: Figures) -> None:
    store_url = url_for(backend, tmp_path)
    doomed = _instance(store_url, tmp_path / "a")
    survivor: Server | None = None
    try:
        survivor = _instance(store_url, tmp_path / "b")
        holder = sign_up(doomed.url, "holder")
        group = members(doomed.url, "load", USERS)
        # long jobs that only the doomed instance can claim: the survivor is frozen meanwhile
        os.killpg(survivor.proc.pid, signal.SIGSTOP)
        try:
            params = {"seconds": HELD_SECONDS, "steps": 6}
            held = [
                httpx.post(f"{doomed.url}/v1/jobs", json={"kind": "sleep", "params": params},
                           headers=holder.auth, timeout=10).json()["job_id"]
                for _ in range(HELD_JOBS)
            ]  # fmt: skip
            wait_until(lambda: all(_job_status(doomed.url, holder, j) == "running" for j in held),
                       timeout=10, what="the held jobs to run on the doomed instance")  # fmt: skip
        finally:
            os.killpg(survivor.proc.pid, signal.SIGCONT)
        with Traffic([doomed.url, survivor.url], group) as traffic:
            began, target = time.monotonic(), traffic.history.successes() + BEFORE
            wait_until(  # the held jobs must still be running at the kill
                lambda: traffic.history.successes() >= target or time.monotonic() > began + 2.0,
                timeout=10, what="traffic before the kill", interval=0.01,
            )  # fmt: skip
            statuses = [_job_status(doomed.url, holder, j) for j in held]
            assert statuses == ["running"] * HELD_JOBS, statuses
            os.killpg(doomed.proc.pid, signal.SIGKILL)
            killed = time.monotonic()
            doomed.proc.wait(10)
            traffic.live.discard(0)
            pairs = [(holder.user_id, j) for j in held]
            back = wait_until(
                lambda: _attempts(store_url, pairs) == [2] * HELD_JOBS,
                timeout=LEASE + 10, what="the killed instance's jobs to run again",
            )  # fmt: skip
            traffic.more(AFTER)
        assert not traffic.unexpected, traffic.unexpected[:5]
        on_survivor = [op for op in traffic.history.snapshot() if op.instance == 1]
        assert not traffic.history.failed(on_survivor), traffic.history.failed(on_survivor)
        for op in traffic.history.snapshot():
            if not op.ok:  # only the doomed instance's requests cut off by the kill
                assert op.instance == 0 and op.error in DOOMED_ERRORS, op
                assert op.ended >= killed - 0.05, op
        totals = check_acknowledged(survivor.url, group)
        wait_until(lambda: all(_job_status(survivor.url, holder, j) == "succeeded" for j in held),
                   timeout=HELD_SECONDS + 10, what="the held jobs to succeed")  # fmt: skip
        held_attempts = _attempts(store_url, [(holder.user_id, j) for j in held])
        assert held_attempts == [2] * HELD_JOBS  # ran again once after the kill, no more
        every = [(m.user_id, j) for m in group for j in m.jobs]
        attempts = _attempts(store_url, every)
        assert len(attempts) == len(every) and max(attempts, default=1) <= 2
        cut_off = traffic.history.failed([op for op in traffic.history.snapshot() if not op.ok])
        figures.record(
            f"{backend}: one of two instances SIGKILLed under load", backend=backend,
            users=USERS, survivor=traffic.history.summary(on_survivor),
            cut_off_on_killed=dict(cut_off), jobs_back_after_s=round(back, 3),
            lease_s=LEASE, held_jobs_attempts=held_attempts,
            jobs_run_twice=sum(a == 2 for a in attempts), lost=0, **totals,
        )  # fmt: skip
    finally:
        doomed.stop()
        if survivor is not None:
            survivor.stop()
    assert survivor is not None
    clean_log(survivor)
    if backend == "sqlite":
        path = store_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
