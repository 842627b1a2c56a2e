"""Per-user background jobs with slot limits, progress and cancellation (docs/jobs.md)."""

from __future__ import annotations

from ..errors import InvalidJobParams, JobCancelled, JobError
from .context import JobContext, ThreadJobContext, ThreadUserState, UserState
from .kinds import JobKind
from .manager import Job, Jobs, job_event, job_json
from .worker import JobWorker

__all__ = [
    "InvalidJobParams",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobKind",
    "JobWorker",
    "Jobs",
    "ThreadJobContext",
    "ThreadUserState",
    "UserState",
    "job_event",
    "job_json",
]
