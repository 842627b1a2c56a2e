"""The SQLite store's job queues (a mixin of :class:`~.store.SqliteStore`).

A claim is one ``BEGIN IMMEDIATE`` transaction on the writer: it counts the running jobs
and picks the waiting ones by the shared rule (``rules.jobs.fair_order``), so the per-user
and global limits hold across every thread and process on the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple
from typing import Any

from ...rules.jobs import check_final, fair_order, queued_row, reap, release, resubmitted
from ..records import JobCounts, JobLimits, JobRow, JobStatus, NewJob
from .parts import Conn, SqlitePart

_COLUMNS = ("job_id, user_id, kind, params, status, progress, message, result, error, "
            "created_at, started_at, finished_at, attempts, max_attempts, worker_id, "
            "lease_expires_at, seq")  # fmt: skip
_SELECT = f"SELECT {_COLUMNS} FROM sw_jobs"
_RUNNING = "status IN ('running', 'cancelling')"
_WAITING = "status IN ('queued', 'interrupted')"


def _job(values: Sequence[Any] | None) -> JobRow | None:
    return None if values is None else JobRow(*values)


def _save(conn: Conn, row: JobRow) -> None:
    values = astuple(row)[:-1]  # everything but seq
    assignments = ", ".join(f"{c.strip()} = ?" for c in _COLUMNS.split(",")[1:-1])
    conn.execute(f"UPDATE sw_jobs SET {assignments} WHERE job_id = ?", (*values[1:], row.job_id))


class SqliteJobs(SqlitePart):
    async def submit_job(self, new: NewJob, *, max_queued: int) -> JobRow | None:
        def job(conn: Conn) -> JobRow | None:
            existing = self._get(conn, new.job_id)
            if existing is not None:
                return resubmitted(existing, new)
            (waiting,) = conn.execute(f"SELECT count(*) FROM sw_jobs WHERE user_id = ? AND "
                                      f"{_WAITING}", (new.user_id,)).fetchone()  # fmt: skip
            if waiting >= max_queued:
                return None
            row = queued_row(new, self._now(), 0)
            cursor = conn.execute(f"INSERT INTO sw_jobs ({_COLUMNS.rsplit(',', 1)[0]}) VALUES "
                                  f"({', '.join('?' * 16)})", astuple(row)[:-1])  # fmt: skip
            return _job(conn.execute(f"{_SELECT} WHERE seq = ?", (cursor.lastrowid,)).fetchone())

        return await self._write(job)

    async def claim_jobs(
        self, worker_id: str, *, want: int, limits: JobLimits, lease: float
    ) -> list[JobRow]:
        def job(conn: Conn) -> list[JobRow]:
            now = self._now()
            counts = conn.execute(f"SELECT user_id, count(*) FROM sw_jobs WHERE {_RUNNING} "
                                  "GROUP BY user_id").fetchall()  # fmt: skip
            by_user = dict(counts)
            waiting = [JobRow(*r) for r in conn.execute(
                f"{_SELECT} WHERE {_WAITING} ORDER BY seq").fetchall()]  # fmt: skip
            served = dict(conn.execute(
                "SELECT user_id, max(started_at) FROM sw_jobs WHERE started_at IS NOT NULL "
                f"AND user_id IN (SELECT user_id FROM sw_jobs WHERE {_WAITING}) GROUP BY user_id"
            ).fetchall())  # fmt: skip
            chosen = fair_order(waiting, by_user, sum(by_user.values()), limits, want, served)
            for row in chosen:
                conn.execute(
                    "UPDATE sw_jobs SET status = 'running', attempts = attempts + 1, "
                    "started_at = ?, worker_id = ?, lease_expires_at = ? WHERE job_id = ?",
                    (now, worker_id, now + lease, row.job_id),
                )
            ids = [row.job_id for row in chosen]
            return [r for r in map(self._get, [conn] * len(ids), ids) if r is not None]

        return await self._write(job)

    @staticmethod
    def _get(conn: Conn, job_id: str) -> JobRow | None:
        return _job(conn.execute(f"{_SELECT} WHERE job_id = ?", (job_id,)).fetchone())

    @staticmethod
    def _held(conn: Conn, job_id: str, worker_id: str) -> JobRow | None:
        return _job(conn.execute(f"{_SELECT} WHERE job_id = ? AND worker_id = ? AND {_RUNNING}",
                                 (job_id, worker_id)).fetchone())  # fmt: skip

    async def heartbeat_jobs(
        self, worker_id: str, job_ids: Sequence[str], lease: float
    ) -> list[str]:
        def job(conn: Conn) -> list[str]:
            cancelling = []
            for job_id in job_ids:
                held = self._held(conn, job_id, worker_id)
                if held is not None:
                    conn.execute("UPDATE sw_jobs SET lease_expires_at = ? WHERE job_id = ?",
                                 (self._now() + lease, job_id))  # fmt: skip
                    if held.status == "cancelling":
                        cancelling.append(job_id)
            return cancelling

        return await self._write(job)

    async def progress_job(
        self, job_id: str, worker_id: str, progress: float, message: str
    ) -> JobStatus | None:
        def job(conn: Conn) -> JobStatus | None:
            held = self._held(conn, job_id, worker_id)
            if held is None:
                return None
            conn.execute("UPDATE sw_jobs SET progress = max(progress, ?), message = ? "
                         "WHERE job_id = ?", (progress, message, job_id))  # fmt: skip
            return held.status

        return await self._write(job)

    async def finish_job(
        self, job_id: str, worker_id: str, status: JobStatus, result: str | None, error: str | None
    ) -> JobRow | None:
        check_final(status)

        def job(conn: Conn) -> JobRow | None:
            held = self._held(conn, job_id, worker_id)
            if held is None:
                return None
            final: JobStatus = "cancelled" if held.status == "cancelling" else status
            conn.execute(
                "UPDATE sw_jobs SET status = ?, result = ?, error = ?, finished_at = ?, "
                "progress = CASE WHEN ? = 'succeeded' THEN 1.0 ELSE progress END, "
                "lease_expires_at = NULL WHERE job_id = ?",
                (final, result, error, self._now(), final, job_id),
            )
            return self._get(conn, job_id)

        return await self._write(job)

    async def cancel_job(self, user_id: str, job_id: str) -> JobRow | None:
        def job(conn: Conn) -> JobRow | None:
            row = self._get(conn, job_id)
            if row is None or row.user_id != user_id:
                return None
            if row.status in ("queued", "interrupted"):
                conn.execute("UPDATE sw_jobs SET status = 'cancelled', finished_at = ? "
                             "WHERE job_id = ?", (self._now(), job_id))  # fmt: skip
            elif row.status == "running":
                conn.execute("UPDATE sw_jobs SET status = 'cancelling' WHERE job_id = ?",
                             (job_id,))  # fmt: skip
            return self._get(conn, job_id)

        return await self._write(job)

    async def get_job(self, user_id: str, job_id: str) -> JobRow | None:
        def job(conn: Conn) -> JobRow | None:
            return _job(conn.execute(f"{_SELECT} WHERE job_id = ? AND user_id = ?",
                                     (job_id, user_id)).fetchone())  # fmt: skip

        return await self._read(job)

    async def list_jobs(self, user_id: str, *, limit: int) -> list[JobRow]:
        def job(conn: Conn) -> list[JobRow]:
            rows = conn.execute(f"{_SELECT} WHERE user_id = ? ORDER BY seq DESC LIMIT ?",
                                (user_id, limit)).fetchall()  # fmt: skip
            return [JobRow(*row) for row in rows]

        return await self._read(job)

    async def reap_jobs(self, *, limit: int) -> list[JobRow]:
        def job(conn: Conn) -> list[JobRow]:
            now = self._now()
            dead = conn.execute(f"{_SELECT} WHERE {_RUNNING} AND lease_expires_at <= ? "
                                "ORDER BY seq LIMIT ?", (now, limit)).fetchall()  # fmt: skip
            reaped = [reap(JobRow(*row), now) for row in dead]
            for row in reaped:
                _save(conn, row)
            return reaped

        return await self._write(job)

    async def release_jobs(self, worker_id: str, job_ids: Sequence[str]) -> list[JobRow]:
        def job(conn: Conn) -> list[JobRow]:
            now = self._now()
            held = [r for r in (self._held(conn, i, worker_id) for i in dict.fromkeys(job_ids))
                    if r is not None]  # fmt: skip
            released = [release(row, now) for row in sorted(held, key=lambda r: r.seq)]
            for row in released:
                _save(conn, row)
            return released

        return await self._write(job)

    async def purge_jobs(self, *, finished_before: float, limit: int) -> int:
        def job(conn: Conn) -> int:
            cursor = conn.execute(
                "DELETE FROM sw_jobs WHERE seq IN (SELECT seq FROM sw_jobs WHERE status IN "
                "('succeeded', 'failed', 'cancelled') AND finished_at < ? "
                "ORDER BY finished_at, seq LIMIT ?)",
                (finished_before, limit),
            )
            return cursor.rowcount

        return await self._write(job)

    async def job_counts(self) -> JobCounts:
        def job(conn: Conn) -> JobCounts:
            running, queued = conn.execute(
                f"SELECT sum({_RUNNING}), sum({_WAITING}) FROM sw_jobs").fetchone()  # fmt: skip
            return JobCounts(int(running or 0), int(queued or 0))

        return await self._read(job)
