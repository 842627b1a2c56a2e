"""Sharded job queues (the ``job_shards=N`` option, N > 1; a base of :class:`~.store.RedisStore`).

With one shard (the default) every job key is under ``{jobs}`` and :mod:`.jobs` decides
every claim in one script. With N shards the job keys are split over the hash tags
``{jobs:0}`` .. ``{jobs:N-1}``, so that on Redis Cluster the queues and their claims spread
over the cluster's shards:

- a user's jobs, queue, running count and indexes are all on shard ``crc32(user) % N``: the
  shard's claim script (lua/job_claim.lua, unchanged) keeps the per-user limit exact;
- the overall limit is a gate, ``P:{jobs:gate}``, a ZSET with one member per slot held
  (lua/job_gate.lua). A claim first reserves up to ``want`` members there atomically
  (never more than ``overall`` in all), then claims on the shards in turn (starting at a
  random one), passing each the members it may use: each started job holds one (its ``gm``,
  indexed in the shard's ``gm`` hash in the same script). Members no shard was sent are
  removed at once. A job that ends (finish, reap, release) drops its ``gm`` from the shard's
  index in the script that ends it, and its member is removed from the gate after that
  script.

So every running job holds a gate member from before it starts until after it ends: the
running jobs never exceed ``overall``, however many processes claim. The price is brief
false refusals (members reserved but not yet used or not yet removed) and members left
behind by a process that died between the two steps, or by a shard call whose outcome is
unknown (its members are never removed at once, since they may be held): ``reap_jobs``
removes every member reserved more than ``GATE_STALE`` seconds ago that no shard's ``gm``
index holds. A member is never reused, so a removal cannot hit a later holder.

A job id is routed to its shard by ``P:jr:<job>`` (set with NX before the job is submitted:
also what makes an id unique across shards), cached in the process; a purge deletes it.
The order is ``rules.jobs.fair_order`` within a shard; across shards a claim takes from one
shard after another (a user on another shard may wait one claim longer).
"""

from __future__ import annotations

import contextlib
import random
import uuid
import zlib
from collections.abc import Sequence
from typing import Any, cast

from ...clock import Clock
from ...errors import ConfigurationError, StorageError
from ...rules.jobs import RELEASED, check_final
from ...urls import StoreURL
from ..records import JobCounts, JobLimits, JobRow, JobStatus, NewJob
from .jobs import JOB_FIELDS, RedisJobs, job_row
from .keys import decode_id, encode_id, optional

#: Seconds after which a gate member no shard holds is removed by the reaper (far above any
#: bounded wait of a claim: a shard call still in flight is long over by then).
GATE_STALE = 60.0
#: Gate members checked per reap at most.
GATE_CHECK = 200
_ROUTES = 10_000  # job id -> shard, remembered per process


class RedisShardedJobs(RedisJobs):
    def __init__(self, url: StoreURL, *, clock: Clock | None = None) -> None:
        super().__init__(url, clock=clock)
        self._shards = self._options.job_shards
        self._job_routes: dict[str, int] = {}

    def _user_shard(self, user_id: str) -> int:
        return zlib.crc32(encode_id(user_id).encode()) % self._shards

    async def _job_shard(self, job_id: str) -> int | None:
        shard = self._job_routes.get(job_id)
        if shard is None:
            raw = await self._call(lambda: self._client.get(self._keys.job_route(job_id)))
            if raw is None:
                return None
            shard = self._remember(job_id, int(raw))
        return shard

    def _remember(self, job_id: str, shard: int) -> int:
        if len(self._job_routes) >= _ROUTES:
            self._job_routes.clear()
        self._job_routes[job_id] = shard
        return shard

    async def _gate(self, op: str, args: Sequence[str], *, idempotent: bool) -> Any:
        argv = [self._now(), op, *args]
        return await self._script("job_gate", [self._keys.job_gate()], argv, idempotent=idempotent)

    async def _ungate(self, members: Sequence[str]) -> None:
        """Give gate members back. A failure is not the caller's: the step before it (a
        claim, a finish) has applied, and the reaper removes members left behind."""
        if members:
            gate = self._keys.job_gate()
            with contextlib.suppress(StorageError):
                await self._call(lambda: self._client.zrem(gate, *members))

    async def submit_job(self, new: NewJob, *, max_queued: int) -> JobRow | None:
        if self._shards == 1:
            return await super().submit_job(new, max_queued=max_queued)
        shard = self._user_shard(new.user_id)
        route = self._keys.job_route(new.job_id)
        await self._call(lambda: self._client.set(route, str(shard), nx=True))
        if await self._job_shard(new.job_id) != shard:
            raise ConfigurationError("job id collision")
        return await self._submit(new, max_queued, shard=shard)

    async def claim_jobs(
        self, worker_id: str, *, want: int, limits: JobLimits, lease: float
    ) -> list[JobRow]:
        if self._shards == 1:
            return await super().claim_jobs(worker_id, want=want, limits=limits, lease=lease)
        want = min(want, limits.overall)
        if want <= 0:
            return []
        token = uuid.uuid4().hex
        reserve = [str(int(limits.overall)), token, str(want)]
        # never repeated: a reservation that applied would hold its members until reaped
        granted = int(await self._gate("reserve", reserve, idempotent=False))
        members = [f"{token}:{i}" for i in range(1, granted + 1)]
        rows: list[JobRow] = []
        first = random.randrange(self._shards)
        sent = 0
        try:
            for step in range(self._shards):
                if len(rows) == granted:
                    break
                shard = (first + step) % self._shards
                offer = members[len(rows) : granted]
                sent = granted  # from here on the members offered may be held
                args = [worker_id, str(len(offer)), str(int(limits.per_user)),
                        str(int(limits.overall)), repr(float(lease)), *offer]  # fmt: skip
                found = await self._jobs("claim", args, idempotent=False, shard=shard)
                for row in found:
                    self._remember(row[0], shard)
                rows += [job_row(row) for row in found]
                sent = len(rows)  # the call answered: the members it did not use are free
        finally:
            await self._ungate(members[sent:granted])
        return rows

    async def heartbeat_jobs(
        self, worker_id: str, job_ids: Sequence[str], lease: float
    ) -> list[str]:
        if self._shards == 1:
            return await super().heartbeat_jobs(worker_id, job_ids, lease)
        by_shard: dict[int, list[str]] = {}
        for job_id in job_ids:
            shard = await self._job_shard(job_id)
            if shard is not None:
                by_shard.setdefault(shard, []).append(job_id)
        cancelling: set[str] = set()
        for shard, ids in by_shard.items():
            args = [worker_id, repr(float(lease)), *map(encode_id, ids)]
            cancelling.update(await self._jobs("heartbeat", args, idempotent=True, shard=shard))
        return [job_id for job_id in job_ids if job_id in cancelling]

    async def progress_job(
        self, job_id: str, worker_id: str, progress: float, message: str
    ) -> JobStatus | None:
        if self._shards == 1:
            return await super().progress_job(job_id, worker_id, progress, message)
        shard = await self._job_shard(job_id)
        if shard is None:
            return None
        args = [encode_id(job_id), worker_id, repr(float(progress)), message]
        reply = await self._jobs("progress", args, idempotent=True, shard=shard)
        return cast(JobStatus | None, reply)

    async def finish_job(
        self, job_id: str, worker_id: str, status: JobStatus, result: str | None, error: str | None
    ) -> JobRow | None:
        if self._shards == 1:
            return await super().finish_job(job_id, worker_id, status, result, error)
        check_final(status)
        shard = await self._job_shard(job_id)
        if shard is None:
            return None
        args = [encode_id(job_id), worker_id, status, optional(result), optional(error)]
        row = await self._jobs("finish", args, idempotent=False, shard=shard)
        if row is None:
            return None
        await self._ungate([row[17]] if row[17] else [])
        return job_row(row)

    async def cancel_job(self, user_id: str, job_id: str) -> JobRow | None:
        if self._shards == 1:
            return await super().cancel_job(user_id, job_id)
        shard = self._user_shard(user_id)
        args = [encode_id(job_id), user_id]
        row = await self._jobs("cancel", args, idempotent=True, shard=shard)
        return None if row is None else job_row(row)

    async def get_job(self, user_id: str, job_id: str) -> JobRow | None:
        if self._shards == 1:
            return await super().get_job(user_id, job_id)
        key = self._keys.job(job_id, self._user_shard(user_id))
        values = await self._call(lambda: self._client.hmget(key, JOB_FIELDS))
        if values[0] is None or values[1] != user_id:
            return None
        return job_row(values)

    async def list_jobs(self, user_id: str, *, limit: int) -> list[JobRow]:
        if self._shards == 1 or limit <= 0:
            return await super().list_jobs(user_id, limit=limit)
        args = [encode_id(user_id), str(int(limit))]
        rows = await self._jobs("list", args, idempotent=True, shard=self._user_shard(user_id))
        return [job_row(row) for row in rows]

    async def reap_jobs(self, *, limit: int) -> list[JobRow]:
        if self._shards == 1 or limit <= 0:
            return await super().reap_jobs(limit=limit)
        rows: list[Any] = []
        for shard in range(self._shards):
            if len(rows) >= limit:
                break
            args = [str(int(limit - len(rows)))]
            # never repeated: a repeat would find nothing, and the reaped jobs go unreported
            rows += await self._jobs("reap", args, idempotent=False, shard=shard)
        await self._ungate([row[17] for row in rows if row[17]])
        with contextlib.suppress(StorageError):  # the next reap tries again
            await self._reconcile_gate()
        return [job_row(row) for row in rows]

    async def release_jobs(self, worker_id: str, job_ids: Sequence[str]) -> list[JobRow]:
        if self._shards == 1 or not job_ids:
            return await super().release_jobs(worker_id, job_ids)
        by_shard: dict[int, list[str]] = {}
        for job_id in dict.fromkeys(job_ids):
            shard = await self._job_shard(job_id)
            if shard is not None:
                by_shard.setdefault(shard, []).append(job_id)
        rows: list[Any] = []
        for shard, ids in by_shard.items():
            args = [worker_id, RELEASED, *map(encode_id, ids)]
            # repeatable: a repeat finds the jobs no longer held by this worker
            rows += await self._jobs("release", args, idempotent=True, shard=shard)
        await self._ungate([row[17] for row in rows if row[17]])
        return sorted((job_row(row) for row in rows), key=lambda row: row.seq)

    async def _reconcile_gate(self) -> None:
        """Remove the stale gate members that no shard holds (see the module)."""
        stale = [str(GATE_STALE), str(GATE_CHECK)]
        members: list[str] = await self._gate("stale", stale, idempotent=True)
        if not members:
            return

        async def held() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for member in members:
                for shard in range(self._shards):
                    pipe.hexists(f"{self._keys.jobs(shard)}gm", member)
            found: list[Any] = await pipe.execute()
            return found

        found = await self._call(held)
        n = self._shards
        await self._ungate([m for i, m in enumerate(members) if not any(found[i * n : i * n + n])])

    async def purge_jobs(self, *, finished_before: float, limit: int) -> int:
        if self._shards == 1 or limit <= 0:
            return await super().purge_jobs(finished_before=finished_before, limit=limit)
        purged: list[str] = []
        for shard in range(self._shards):
            if len(purged) >= limit:
                break
            args = [repr(float(finished_before)), str(int(limit - len(purged)))]
            # never repeated: a repeat would delete up to `limit` more
            purged += await self._jobs("purge", args, idempotent=False, shard=shard)
        for member in purged:
            self._job_routes.pop(decode_id(member), None)
        await self._delete_each([f"{self._keys.prefix}:jr:{member}" for member in purged])
        return len(purged)

    async def job_counts(self) -> JobCounts:
        if self._shards == 1:
            return await super().job_counts()
        running = waiting = 0
        for shard in range(self._shards):
            r, w = await self._jobs("counts", [], idempotent=True, shard=shard)
            running, waiting = running + int(r), waiting + int(w)
        return JobCounts(running, waiting)
