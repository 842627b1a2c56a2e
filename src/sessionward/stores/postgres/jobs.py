"""The PostgreSQL store's job queues (a layer of :class:`~.store.PostgresStore`).

Every operation is one autocommit statement: one round trip. Submit, claim, cancel, reap,
release and purge call the PL/pgSQL functions of migration 4 (:mod:`.jobs_schema`, which
says why claims are exact: a claim holds the schema's claim lock exclusively, every other
change to the queues holds it shared). Progress, heartbeats and finishing are single
``UPDATE … RETURNING`` statements on the job's row that take no such lock, so a worker's
traffic never waits for a claim. The reaper and the purge are bounded (``LIMIT``) and skip
a job whose worker is writing it right now (``FOR UPDATE SKIP LOCKED``: the next pass
takes it). Times are the server's ``clock_timestamp()`` unless a clock is injected.

Retries: a call that decides something (claim, finish, reap, purge) is never repeated once
sent unless the server rolled it back; a submit is keyed by the job id (a repeat after a
lost reply finds its job and returns it); the others set values, so a repeat finds the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import psycopg
from psycopg import sql
from psycopg.errors import TransactionRollback, UniqueViolation
from psycopg.rows import TupleRow

from ...clock import Clock
from ...errors import ConfigurationError, StorageError
from ...rules.jobs import RELEASED, check_final, reap
from ...urls import StoreURL
from ..records import JobCounts, JobLimits, JobRow, JobStatus, NewJob
from .connection import PostgresCore, closed_by_server, fetch_all
from .schema import lock_key, table_names
from .statements import Params, compose_into

_COLUMNS = ", ".join(f"j.{f.name}" for f in fields(JobRow))
_CLOCK = (
    "WITH clock AS MATERIALIZED ("
    "SELECT COALESCE(%(now)s::float8, extract(epoch FROM clock_timestamp())::float8) AS now)"
)
_HELD = (
    "j.job_id = %(job_id)s AND j.worker_id = %(worker_id)s"
    " AND j.status IN ('running', 'cancelling')"
)

_TEMPLATES = {
    "submit": """SELECT {cols} FROM {submit_job}(%(job_id)s, %(user_id)s, %(kind)s,
    %(params)s, %(max_attempts)s::int4, %(max_queued)s::int8, %(now)s::float8,
    %(lock)s::int8) AS j""",
    "claim": """SELECT {cols} FROM {claim_jobs}(%(worker_id)s, %(want)s::int8,
    %(per_user)s::int8, %(overall)s::int8, %(lease)s::float8, %(now)s::float8,
    %(lock)s::int8) WITH ORDINALITY AS j ORDER BY j.ordinality""",
    # The cancelling ones among the given ids, in the order given.
    "heartbeat": """{clock}, beat AS (
    UPDATE {jobs} AS j SET lease_expires_at = clock.now + %(lease)s::float8 FROM clock
    WHERE j.job_id = ANY(%(job_ids)s::text[]) AND j.worker_id = %(worker_id)s
      AND j.status IN ('running', 'cancelling')
    RETURNING j.job_id, j.status
)
SELECT i.job_id FROM unnest(%(job_ids)s::text[]) WITH ORDINALITY AS i(job_id, n)
JOIN beat AS b ON b.job_id = i.job_id WHERE b.status = 'cancelling' ORDER BY i.n""",
    # max(), as the reference takes it: a NaN is never greater, so it changes nothing.
    "progress": """UPDATE {jobs} AS j
SET progress = GREATEST(j.progress, NULLIF(%(progress)s::float8, 'NaN')), message = %(message)s
WHERE {held} RETURNING j.status""",
    "finish": """{clock}
UPDATE {jobs} AS j
SET status = CASE WHEN j.status = 'cancelling' THEN 'cancelled' ELSE %(status)s::text END,
    progress = CASE WHEN j.status <> 'cancelling' AND %(status)s::text = 'succeeded' THEN 1
                    ELSE j.progress END,
    result = %(result)s, error = %(error)s, finished_at = clock.now, lease_expires_at = NULL
FROM clock WHERE {held} RETURNING {cols}""",
    "cancel": """SELECT {cols} FROM {cancel_job}(%(user_id)s, %(job_id)s, %(now)s::float8,
    %(lock)s::int8) AS j""",
    "get": "SELECT {cols} FROM {jobs} AS j WHERE j.job_id = %(job_id)s AND j.user_id = %(user_id)s",
    "list": """SELECT {cols} FROM {jobs} AS j WHERE j.user_id = %(user_id)s
ORDER BY j.seq DESC LIMIT %(limit)s""",
    "reap": """SELECT {cols} FROM {reap_jobs}(%(limit)s::int8, %(now)s::float8,
    %(interrupted)s, %(failed)s, %(lock)s::int8) AS j ORDER BY j.seq""",
    "release": """SELECT {cols} FROM {release_jobs}(%(worker_id)s, %(job_ids)s::text[],
    %(now)s::float8, %(released)s, %(lock)s::int8) AS j ORDER BY j.seq""",
    "purge": "SELECT {purge_jobs}(%(before)s::float8, %(limit)s::int8, %(lock)s::int8)",
    "counts": """SELECT
    (SELECT count(*) FROM {jobs} AS j WHERE j.status IN ('running', 'cancelling')),
    (SELECT count(*) FROM {jobs} AS j WHERE j.status IN ('queued', 'interrupted'))""",
}


@dataclass(frozen=True, slots=True)
class JobStatements:
    submit: sql.Composed
    claim: sql.Composed
    heartbeat: sql.Composed
    progress: sql.Composed
    finish: sql.Composed
    cancel: sql.Composed
    get: sql.Composed
    list: sql.Composed
    reap: sql.Composed
    release: sql.Composed
    purge: sql.Composed
    counts: sql.Composed


def compose_jobs(schema: str) -> JobStatements:
    names = {**table_names(schema), "cols": sql.SQL(_COLUMNS), "clock": sql.SQL(_CLOCK),
             "held": sql.SQL(_HELD)}  # fmt: skip
    return compose_into(JobStatements, _TEMPLATES, names)


def _reap_texts() -> Params:
    """The message of an interrupted job and the error of a failed one, as ``reap`` words them."""
    row = JobRow("", "", "", "", "running", 0.0, "", None, None, 0.0, 0.0, None, 1, 2, "w", 0.0, 0)
    return {"interrupted": reap(row, 0.0).message,
            "failed": reap(replace(row, attempts=2), 0.0).error}  # fmt: skip


_REAP_TEXTS = _reap_texts()


class PostgresJobs(PostgresCore):
    def __init__(self, url: StoreURL, *, clock: Clock | None = None) -> None:
        super().__init__(url, clock=clock)
        self._jobs = compose_jobs(self._schema)
        self._claim_lock = lock_key(self._schema, "jobs-claim")

    async def _once(self, query: sql.Composed, params: Params) -> list[TupleRow]:
        """One autocommit statement, never repeated once it may have committed: the rule of
        :meth:`~.connection.PostgresCore._one`, for a statement returning many rows."""

        async def op() -> list[TupleRow]:
            async with self._live_pool().connection() as conn:
                if closed_by_server(conn):
                    raise psycopg.OperationalError("the server closed this pooled connection")
                try:
                    return await fetch_all(conn, query, params)
                except psycopg.OperationalError as exc:
                    if not isinstance(exc, TransactionRollback):
                        raise self._retry.wrap(exc) from exc  # maybe committed: never repeat
                    raise

        return await self._retry(op)

    async def submit_job(self, new: NewJob, *, max_queued: int) -> JobRow | None:
        params = {
            "job_id": new.job_id, "user_id": new.user_id, "kind": new.kind,
            "params": new.params, "max_attempts": new.max_attempts, "max_queued": max_queued,
            "now": self._now(), "lock": self._claim_lock,
        }  # fmt: skip
        # Repeatable: a repeat after a lost reply finds the job it made, by its id.
        try:
            return _job(await self._one(self._jobs.submit, params))
        except StorageError as exc:
            if isinstance(exc.__cause__, UniqueViolation):  # the id is another job's
                raise ConfigurationError("job id collision") from None
            raise

    async def claim_jobs(
        self, worker_id: str, *, want: int, limits: JobLimits, lease: float
    ) -> list[JobRow]:
        if want <= 0:
            return []
        params = {
            "worker_id": worker_id, "want": want, "per_user": limits.per_user,
            "overall": limits.overall, "lease": lease, "now": self._now(),
            "lock": self._claim_lock,
        }  # fmt: skip
        return [_row(r) for r in await self._once(self._jobs.claim, params)]

    async def heartbeat_jobs(
        self, worker_id: str, job_ids: Sequence[str], lease: float
    ) -> list[str]:
        if not job_ids:
            return []
        params = {"worker_id": worker_id, "job_ids": list(job_ids), "lease": lease,
                  "now": self._now()}  # fmt: skip
        return [str(r[0]) for r in await self._all(self._jobs.heartbeat, params)]

    async def progress_job(
        self, job_id: str, worker_id: str, progress: float, message: str
    ) -> JobStatus | None:
        params = {"job_id": job_id, "worker_id": worker_id, "progress": progress,
                  "message": message}  # fmt: skip
        row = await self._one(self._jobs.progress, params)
        return None if row is None else row[0]

    async def finish_job(
        self, job_id: str, worker_id: str, status: JobStatus, result: str | None, error: str | None
    ) -> JobRow | None:
        check_final(status)
        params = {"job_id": job_id, "worker_id": worker_id, "status": status, "result": result,
                  "error": error, "now": self._now()}  # fmt: skip
        # Not repeatable after a lost reply: the repeat would find the job no longer held.
        return _job(await self._one(self._jobs.finish, params, idempotent=False))

    async def cancel_job(self, user_id: str, job_id: str) -> JobRow | None:
        params = {"user_id": user_id, "job_id": job_id, "now": self._now(),
                  "lock": self._claim_lock}  # fmt: skip
        # Repeatable: a cancelled or cancelling job is left as it is.
        return _job(await self._one(self._jobs.cancel, params))

    async def get_job(self, user_id: str, job_id: str) -> JobRow | None:
        return _job(await self._one(self._jobs.get, {"user_id": user_id, "job_id": job_id}))

    async def list_jobs(self, user_id: str, *, limit: int) -> list[JobRow]:
        if limit <= 0:
            return []
        rows = await self._all(self._jobs.list, {"user_id": user_id, "limit": limit})
        return [_row(r) for r in rows]

    async def reap_jobs(self, *, limit: int) -> list[JobRow]:
        if limit <= 0:
            return []
        params = {**_REAP_TEXTS, "limit": limit, "now": self._now(), "lock": self._claim_lock}
        return [_row(r) for r in await self._once(self._jobs.reap, params)]

    async def release_jobs(self, worker_id: str, job_ids: Sequence[str]) -> list[JobRow]:
        if not job_ids:
            return []
        params = {"worker_id": worker_id, "job_ids": list(dict.fromkeys(job_ids)),
                  "now": self._now(), "released": RELEASED, "lock": self._claim_lock}  # fmt: skip
        # Repeatable: a repeat finds the jobs no longer held by this worker.
        return [_row(r) for r in await self._all(self._jobs.release, params)]

    async def purge_jobs(self, *, finished_before: float, limit: int) -> int:
        if limit <= 0:
            return 0
        params = {"before": finished_before, "limit": limit, "lock": self._claim_lock}
        row = await self._one(self._jobs.purge, params, idempotent=False)
        assert row is not None
        return int(row[0])

    async def job_counts(self) -> JobCounts:
        row = await self._one(self._jobs.counts, {})
        assert row is not None
        return JobCounts(int(row[0]), int(row[1]))


def _row(values: Sequence[Any]) -> JobRow:
    return JobRow(*values[: len(fields(JobRow))])


def _job(values: Sequence[Any] | None) -> JobRow | None:
    return None if values is None else _row(values)
