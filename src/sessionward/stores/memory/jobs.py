"""The memory store's job queues (a mixin of :class:`~.store.MemoryStore`), under its lock."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from ...rules.jobs import check_final, fair_order, queued_row, reap, release, resubmitted
from ..records import FINISHED, RUNNING, WAITING, JobCounts, JobLimits, JobRow, JobStatus, NewJob

T = TypeVar("T")


class MemoryJobs:
    def _locked(self, fn: Callable[[float], T]) -> T:
        raise NotImplementedError  # MemoryStore's

    def __init__(self) -> None:
        self._jobs: dict[str, JobRow] = {}
        self._job_seq = 0

    async def submit_job(self, new: NewJob, *, max_queued: int) -> JobRow | None:
        def op(now: float) -> JobRow | None:
            existing = self._jobs.get(new.job_id)
            if existing is not None:
                return resubmitted(existing, new)
            waiting = sum(
                j.user_id == new.user_id and j.status in WAITING for j in self._jobs.values()
            )
            if waiting >= max_queued:
                return None
            self._job_seq += 1
            row = queued_row(new, now, self._job_seq)
            self._jobs[row.job_id] = row
            return row

        return self._locked(op)

    async def claim_jobs(
        self, worker_id: str, *, want: int, limits: JobLimits, lease: float
    ) -> list[JobRow]:
        def op(now: float) -> list[JobRow]:
            jobs = sorted(self._jobs.values(), key=lambda j: j.seq)
            running = [j for j in jobs if j.status in RUNNING]
            by_user: dict[str, int] = {}
            for job in running:
                by_user[job.user_id] = by_user.get(job.user_id, 0) + 1
            waiting = [j for j in jobs if j.status in WAITING]
            served: dict[str, float] = {}
            for job in jobs:
                if job.started_at is not None:
                    served[job.user_id] = max(served.get(job.user_id, job.started_at),
                                              job.started_at)  # fmt: skip
            chosen = fair_order(waiting, by_user, len(running), limits, want, served)
            for job in chosen:
                self._jobs[job.job_id] = replace(
                    job, status="running", attempts=job.attempts + 1, started_at=now,
                    worker_id=worker_id, lease_expires_at=now + lease,
                )  # fmt: skip
            return [self._jobs[j.job_id] for j in chosen]

        return self._locked(op)

    def _held(self, job_id: str, worker_id: str) -> JobRow | None:
        job = self._jobs.get(job_id)
        return (
            job
            if job is not None and job.worker_id == worker_id and job.status in RUNNING
            else None
        )

    async def heartbeat_jobs(
        self, worker_id: str, job_ids: Sequence[str], lease: float
    ) -> list[str]:
        def op(now: float) -> list[str]:
            cancelling = []
            for job_id in job_ids:
                job = self._held(job_id, worker_id)
                if job is not None:
                    self._jobs[job_id] = replace(job, lease_expires_at=now + lease)
                    if job.status == "cancelling":
                        cancelling.append(job_id)
            return cancelling

        return self._locked(op)

    async def progress_job(
        self, job_id: str, worker_id: str, progress: float, message: str
    ) -> JobStatus | None:
        def op(now: float) -> JobStatus | None:
            job = self._held(job_id, worker_id)
            if job is None:
                return None
            self._jobs[job_id] = replace(job, progress=max(job.progress, progress), message=message)
            return job.status

        return self._locked(op)

    async def finish_job(
        self, job_id: str, worker_id: str, status: JobStatus, result: str | None, error: str | None
    ) -> JobRow | None:
        check_final(status)

        def op(now: float) -> JobRow | None:
            job = self._held(job_id, worker_id)
            if job is None:
                return None
            final: JobStatus = "cancelled" if job.status == "cancelling" else status
            progress = 1.0 if final == "succeeded" else job.progress
            done = replace(job, status=final, result=result, error=error, finished_at=now,
                           progress=progress, lease_expires_at=None)  # fmt: skip
            self._jobs[job_id] = done
            return done

        return self._locked(op)

    async def cancel_job(self, user_id: str, job_id: str) -> JobRow | None:
        def op(now: float) -> JobRow | None:
            job = self._jobs.get(job_id)
            if job is None or job.user_id != user_id:
                return None
            if job.status in WAITING:
                job = replace(job, status="cancelled", finished_at=now)
            elif job.status == "running":
                job = replace(job, status="cancelling")
            self._jobs[job_id] = job
            return job

        return self._locked(op)

    async def get_job(self, user_id: str, job_id: str) -> JobRow | None:
        def op(now: float) -> JobRow | None:
            job = self._jobs.get(job_id)
            return job if job is not None and job.user_id == user_id else None

        return self._locked(op)

    async def list_jobs(self, user_id: str, *, limit: int) -> list[JobRow]:
        def op(now: float) -> list[JobRow]:
            mine = [j for j in self._jobs.values() if j.user_id == user_id]
            return sorted(mine, key=lambda j: -j.seq)[:limit]

        return self._locked(op)

    async def reap_jobs(self, *, limit: int) -> list[JobRow]:
        def op(now: float) -> list[JobRow]:
            dead = [j for j in self._jobs.values() if j.status in RUNNING
                    and j.lease_expires_at is not None and j.lease_expires_at <= now]  # fmt: skip
            reaped = []
            for job in sorted(dead, key=lambda j: j.seq)[:limit]:
                self._jobs[job.job_id] = after = reap(job, now)
                reaped.append(after)
            return reaped

        return self._locked(op)

    async def release_jobs(self, worker_id: str, job_ids: Sequence[str]) -> list[JobRow]:
        def op(now: float) -> list[JobRow]:
            found = (self._held(job_id, worker_id) for job_id in dict.fromkeys(job_ids))
            held = [job for job in found if job is not None]
            released = []
            for job in sorted(held, key=lambda j: j.seq):
                self._jobs[job.job_id] = after = release(job, now)
                released.append(after)
            return released

        return self._locked(op)

    async def purge_jobs(self, *, finished_before: float, limit: int) -> int:
        def op(now: float) -> int:
            old = sorted((j for j in self._jobs.values() if j.status in FINISHED
                          and j.finished_at is not None and j.finished_at < finished_before),
                         key=lambda j: (j.finished_at, j.seq))  # fmt: skip
            for job_id in [j.job_id for j in old[: max(limit, 0)]]:
                del self._jobs[job_id]
            return min(len(old), max(limit, 0))

        return self._locked(op)

    async def job_counts(self) -> JobCounts:
        def op(now: float) -> JobCounts:
            running = sum(j.status in RUNNING for j in self._jobs.values())
            return JobCounts(running, sum(j.status in WAITING for j in self._jobs.values()))

        return self._locked(op)
