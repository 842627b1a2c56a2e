"""The Redis store's job queues (a base of :class:`~.store.RedisStore`).

Every job key is under the one hash tag ``{jobs}`` (layout in :mod:`.keys`, the
invariants in ``lua/job_prelude.lua``), so a single script sees the queues of every user and
the global counts at once, and the layout still works on Redis Cluster. Each operation is one
Lua script, atomic against every client of every process:

- a claim counts the running (and cancelling) jobs, overall (``ZCARD`` of the leases) and per
  user (a hash kept in step with every status change), and picks by
  ``rules.jobs.fair_order`` among the heads of the queues of the users with waiting jobs
  and a free slot (a min-heap of ``(running, last served, head seq)``; a user's last
  ``started_at`` is the top of a per-user index of started jobs, which a purge keeps
  exact): its work grows with the users that wait, not with the jobs;
- finishing, cancelling and reaping change the counts in the same script as the status, so
  the counts cannot drift from the jobs.

Times are the script's clock (the server's ``TIME``, or the injected clock's ``now``), as in
the other scripts. Jobs have no TTL: finished ones stay until :meth:`purge_jobs` deletes
them, oldest finished first.

Round trips: one for every operation (``get_job`` a plain ``HMGET``; the rest one
``EVALSHA``). A script that may have applied is sent again only where that is harmless:
``claim_jobs``, ``finish_job``, ``reap_jobs`` and ``purge_jobs`` never are (a lost claim's
jobs run under a worker that does not know them, until their leases expire and the reaper
interrupts them). ``submit_job`` is keyed by the job id (a repeat finds the job and returns
it); a heartbeat, progress and a cancel set absolute values; the rest only read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from ...errors import ConfigurationError
from ...rules.jobs import RELEASED, check_final
from ..records import JobCounts, JobLimits, JobRow, JobStatus, NewJob
from .connection import RedisConnection
from .keys import encode_id, optional

#: The job hash's fields, in the order of every row a script returns (``JOB_FIELDS`` in
#: lua/job_prelude.lua) and of :class:`~sessionward.stores.records.JobRow`, then ``gm``: the
#: gate member its latest start held (sharded queues, :mod:`.jobs_sharded`; not in the row).
JOB_FIELDS = (
    "id", "uid", "kind", "par", "st", "pg", "msg", "res", "err", "ca", "sa", "fa", "att", "max",
    "wid", "le", "seq", "gm",
)  # fmt: skip


def _time(value: str | None) -> float | None:
    return None if value is None else float(value)


def job_row(values: Sequence[Any]) -> JobRow:
    """A row from a script's reply (or an ``HMGET``): JOB_FIELDS order, ``None`` if absent."""
    (job_id, user_id, kind, params, status, progress, message, result, error, created_at,
     started_at, finished_at, attempts, max_attempts, worker_id, lease,
     seq) = values[:17]  # fmt: skip
    return JobRow(
        job_id=job_id,
        user_id=user_id,
        kind=kind,
        params=params,
        status=cast(JobStatus, status),
        progress=float(progress),
        message=message,
        result=result,
        error=error,
        created_at=float(created_at),
        started_at=_time(started_at),
        finished_at=_time(finished_at),
        attempts=int(attempts),
        max_attempts=int(max_attempts),
        worker_id=worker_id,
        lease_expires_at=_time(lease),
        seq=int(seq),
    )


class RedisJobs(RedisConnection):
    async def _jobs(
        self, op: str, args: Sequence[str], *, idempotent: bool, shard: int | None = None
    ) -> Any:
        """Run ``lua/job_<op>.lua``: the shared job keys, then ``now``, the base, ``args``
        (of one shard of sharded queues, :mod:`.jobs_sharded`)."""
        argv = [self._now(), self._keys.jobs(shard), *args]
        keys = self._keys.job_shared(shard)
        return await self._script(f"job_{op}", keys, argv, idempotent=idempotent)

    async def submit_job(self, new: NewJob, *, max_queued: int) -> JobRow | None:
        return await self._submit(new, max_queued, shard=None)

    async def _submit(self, new: NewJob, max_queued: int, *, shard: int | None) -> JobRow | None:
        args = [
            encode_id(new.job_id), encode_id(new.user_id), str(int(max_queued)),
            new.job_id, new.user_id, new.kind, new.params, str(int(new.max_attempts)),
        ]  # fmt: skip
        reply = await self._jobs("submit", args, idempotent=True, shard=shard)  # by job id
        if reply[0] == "collision":
            raise ConfigurationError("job id collision")
        return job_row(reply[1]) if reply[0] == "queued" else None

    async def claim_jobs(
        self, worker_id: str, *, want: int, limits: JobLimits, lease: float
    ) -> list[JobRow]:
        if want <= 0:
            return []
        args = [worker_id, str(int(want)), str(int(limits.per_user)), str(int(limits.overall)),
                repr(float(lease))]  # fmt: skip
        # never repeated: a claim that applied would start more jobs, and leave these orphaned
        rows = await self._jobs("claim", args, idempotent=False)
        return [job_row(row) for row in rows]

    async def heartbeat_jobs(
        self, worker_id: str, job_ids: Sequence[str], lease: float
    ) -> list[str]:
        if not job_ids:
            return []
        args = [worker_id, repr(float(lease)), *map(encode_id, job_ids)]
        return list(await self._jobs("heartbeat", args, idempotent=True))

    async def progress_job(
        self, job_id: str, worker_id: str, progress: float, message: str
    ) -> JobStatus | None:
        args = [encode_id(job_id), worker_id, repr(float(progress)), message]
        return cast(JobStatus | None, await self._jobs("progress", args, idempotent=True))

    async def finish_job(
        self, job_id: str, worker_id: str, status: JobStatus, result: str | None, error: str | None
    ) -> JobRow | None:
        check_final(status)
        args = [encode_id(job_id), worker_id, status, optional(result), optional(error)]
        # never repeated: once applied, a repeat would answer that the job is not held
        row = await self._jobs("finish", args, idempotent=False)
        return None if row is None else job_row(row)

    async def cancel_job(self, user_id: str, job_id: str) -> JobRow | None:
        row = await self._jobs("cancel", [encode_id(job_id), user_id], idempotent=True)
        return None if row is None else job_row(row)

    async def get_job(self, user_id: str, job_id: str) -> JobRow | None:
        key = self._keys.job(job_id)
        values = await self._call(lambda: self._client.hmget(key, JOB_FIELDS))
        if values[0] is None or values[1] != user_id:
            return None
        return job_row(values)

    async def list_jobs(self, user_id: str, *, limit: int) -> list[JobRow]:
        if limit <= 0:
            return []
        rows = await self._jobs("list", [encode_id(user_id), str(int(limit))], idempotent=True)
        return [job_row(row) for row in rows]

    async def reap_jobs(self, *, limit: int) -> list[JobRow]:
        if limit <= 0:
            return []
        # never repeated: a repeat would find nothing, and the reaped jobs would go unreported
        rows = await self._jobs("reap", [str(int(limit))], idempotent=False)
        return [job_row(row) for row in rows]

    async def release_jobs(self, worker_id: str, job_ids: Sequence[str]) -> list[JobRow]:
        if not job_ids:
            return []
        args = [worker_id, RELEASED, *map(encode_id, dict.fromkeys(job_ids))]
        # repeatable: a repeat finds the jobs no longer held by this worker and changes nothing
        rows = await self._jobs("release", args, idempotent=True)
        return [job_row(row) for row in rows]

    async def purge_jobs(self, *, finished_before: float, limit: int) -> int:
        if limit <= 0:
            return 0
        args = [repr(float(finished_before)), str(int(limit))]
        # never repeated: a repeat would delete up to `limit` more
        return len(await self._jobs("purge", args, idempotent=False))

    async def job_counts(self) -> JobCounts:
        running, waiting = await self._jobs("counts", [], idempotent=True)
        return JobCounts(int(running), int(waiting))
