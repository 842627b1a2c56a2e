"""A clean stop (SIGTERM) of a real ``sessionward serve`` hands its running job back at once:
the restarted instance picks it up well before the lease runs out, it completes, and a job
with ``max_attempts=1`` does not fail for the restart (issue 14)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import anyio
import httpx
import pytest

from sessionward import Settings, open_ward
from sessionward.jobs import JobKind
from sessionward.jobs.builtin import SLEEP
from sessionward.stores.records import JobRow
from sessionward.testing import wait_until
from tests.conftest import SHARED_BACKENDS, url_for

from .server import Server, start
from .test_flows import bearer, signed_up

LEASE = 30.0  # the job must come back long before this
ENV = {"SESSIONWARD_JOB_LEASE": str(LEASE), "SESSIONWARD_LOGIN_IP_MAX_FAILURES": "100000"}
# The built-in sleep kind as another application on the store registers it: one attempt only.
ONE_ATTEMPT = JobKind("sleep", SLEEP.handler, SLEEP.params, max_attempts=1, timeout=900)


async def _submit(url: str, username: str) -> str:
    async with open_ward(url, settings=Settings(), sweep=False) as ward:
        user = await ward.users.find(username)
        assert user is not None
        ward.jobs.register(ONE_ATTEMPT)
        job = await ward.jobs.submit(user.user_id, "sleep", {"seconds": 4.0, "steps": 4})
        return job.job_id


async def _row(url: str, username: str, job_id: str) -> JobRow:
    async with open_ward(url, settings=Settings(), sweep=False) as ward:
        user = await ward.users.find(username)
        assert user is not None
        row = await ward.store.get_job(user.user_id, job_id)
        assert row is not None
        return row


def _status(api: httpx.Client, auth: dict[str, str], job_id: str) -> str:
    answer = api.get(f"/v1/jobs/{job_id}", headers=auth)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["status"])


def _sigterm(server: Server) -> float:
    """Stop the server as a supervisor does; the seconds its clean exit took."""
    began = time.monotonic()
    os.killpg(server.proc.pid, signal.SIGTERM)
    # uvicorn re-raises the signal once it has shut down cleanly
    assert server.proc.wait(15) in (0, -signal.SIGTERM)
    return time.monotonic() - began


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_sigterm_hands_the_running_job_back_for_the_restarted_instance(
    backend: str, tmp_path: Path
) -> None:
    url, name = url_for(backend, tmp_path), f"stop{os.getpid()}{backend[:2]}"
    first = start(url, tmp_path, **ENV)
    second = None
    try:
        with httpx.Client(base_url=first.url, timeout=30) as api:
            alice = bearer(signed_up(api, name))
            job_id = anyio.run(_submit, url, name)
            wait_until(lambda: _status(api, alice, job_id) == "running", timeout=15,
                       what="the job running on the first instance")  # fmt: skip
        on_first = anyio.run(_row, url, name, job_id)
        assert (on_first.status, on_first.attempts, on_first.max_attempts) == ("running", 1, 1)
        assert _sigterm(first) < 10
        log = first.log.read_text()
        assert "Application shutdown complete" in log and "Traceback" not in log, log[-3000:]
        back = anyio.run(_row, url, name, job_id)  # no instance runs now
        assert (back.status, back.attempts, back.worker_id, back.lease_expires_at) == (
            "queued", 0, None, None,
        )  # fmt: skip
        second = start(url, tmp_path, **ENV)
        ready = time.monotonic()
        with httpx.Client(base_url=second.url, timeout=30) as api:
            wait_until(lambda: _status(api, alice, job_id) in ("running", "succeeded"),
                       timeout=10, what="the restarted instance taking the job")  # fmt: skip
            picked_up = time.monotonic() - ready
            wait_until(lambda: _status(api, alice, job_id) == "succeeded", timeout=15,
                       what="the job completing on the restarted instance")  # fmt: skip
        done = anyio.run(_row, url, name, job_id)
        assert (done.status, done.attempts, done.max_attempts) == ("succeeded", 1, 1)
        assert done.worker_id != on_first.worker_id and done.result == '{"slept":4.0}'
        assert picked_up < 3 < LEASE, picked_up  # at once, not after the 30 s lease
    finally:
        first.stop()
        if second is not None:
            second.stop()
