"""The job rules every backend applies: fair ordering of claims, the shape of a queued job,
what a job whose worker died or stopped cleanly becomes, and the contract of a repeated
submit."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

from ..errors import ConfigurationError
from ..stores.records import FINISHED, JobLimits, JobRow, NewJob


def resubmitted(existing: JobRow, new: NewJob) -> JobRow:
    """A submit whose job id is in the store already: the same submission sent again (its
    reply was lost, or it was sent twice at once) finds its job, as it is now; any other
    job's id is refused and nothing is written."""
    same = (existing.user_id, existing.kind, existing.params, existing.max_attempts)
    if same != (new.user_id, new.kind, new.params, new.max_attempts):
        raise ConfigurationError("job id collision")
    return existing


def check_final(status: str) -> None:
    """``finish_job`` ends a job only with a final status."""
    if status not in FINISHED:
        raise ValueError(f"a job ends succeeded, failed or cancelled, not {status}")


def fair_order(
    queued: Sequence[JobRow], running_by_user: Mapping[str, int], running: int,
    limits: JobLimits, want: int, last_started: Mapping[str, float] | None = None,
) -> list[JobRow]:  # fmt: skip
    """Which queued jobs to start now (the rule every backend applies): while slots are free,
    the next job is the oldest queued job of the user with the fewest running jobs; among
    users with as few, the user served longest ago (whose latest ``started_at`` is oldest;
    a user none of whose jobs ever started first, and one picked in this claim last), then
    the user whose oldest queued job is oldest. FIFO within a user, and the users take
    turns: none waits behind another's whole queue, even when more users wait than there
    are slots. ``queued`` must be ordered by ``seq``; ``last_started`` maps users to the
    latest ``started_at`` of any of their jobs still stored (missing: never started).

    Without ``last_started`` the turns are lost: idle users then go by their oldest queued
    job, and with more waiting users than slots the users holding the oldest jobs keep every
    slot until their queues are empty."""
    heads: dict[str, list[JobRow]] = {}
    for job in queued:
        heads.setdefault(job.user_id, []).append(job)
    busy: dict[str, int] = dict(running_by_user)
    served: dict[str, float] = dict(last_started or {})
    chosen: list[JobRow] = []
    while len(chosen) < want and running + len(chosen) < limits.overall:
        open_users = [u for u, jobs in heads.items() if jobs and busy.get(u, 0) < limits.per_user]
        if not open_users:
            break
        user = min(open_users, key=lambda u: (busy.get(u, 0), served.get(u, -math.inf),
                                              heads[u][0].seq))  # fmt: skip
        chosen.append(heads[user].pop(0))
        busy[user] = busy.get(user, 0) + 1
        served[user] = math.inf  # just now: after everyone served before this claim
    return chosen


def queued_row(new: NewJob, now: float, seq: int) -> JobRow:
    """A job as submitted (every backend stores the same fields)."""
    return JobRow(
        new.job_id, new.user_id, new.kind, new.params, "queued", 0.0, "", None, None,
        now, None, None, 0, new.max_attempts, None, None, seq,
    )  # fmt: skip


def reap(job: JobRow, now: float) -> JobRow:
    """What a job whose worker died becomes (the rule every backend applies)."""
    if job.status == "cancelling":
        return replace(
            job, status="cancelled", finished_at=now, worker_id=None, lease_expires_at=None
        )
    if job.attempts < job.max_attempts:
        return replace(job, status="interrupted", worker_id=None, lease_expires_at=None,
                       message="interrupted: its worker stopped; it will run again")  # fmt: skip
    return replace(job, status="failed", error="the job's worker stopped too many times",
                   finished_at=now, worker_id=None, lease_expires_at=None)  # fmt: skip


#: The message of a job its worker handed back on a clean stop.
RELEASED = "released: its worker stopped; it will run again"


def release(job: JobRow, now: float) -> JobRow:
    """What a running job becomes when its worker stops cleanly and hands it back (the rule
    every backend applies): a ``cancelling`` one is ``cancelled``; a ``running`` one is
    ``queued`` again in its place (its ``seq``), the attempt it was on not charged, its
    progress back to 0, lease and worker cleared. Its ``started_at`` stays, so the user's
    turn in :func:`fair_order` is as if the job had run."""
    if job.status == "cancelling":
        return replace(
            job, status="cancelled", finished_at=now, worker_id=None, lease_expires_at=None
        )
    return replace(job, status="queued", attempts=max(job.attempts - 1, 0), progress=0.0,
                   message=RELEASED, worker_id=None, lease_expires_at=None)  # fmt: skip
