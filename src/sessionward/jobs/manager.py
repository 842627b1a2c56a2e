"""Per-user background jobs: submit, look, watch, cancel. Workers (``worker.py``) run them.

    ward.jobs.register(JobKind("scan", scan, ScanParams))
    job = await ward.jobs.submit(user_id, "scan", {"text": "..."})
    job = await ward.jobs.get(user_id, job.job_id)        # status, progress, result
    async for job in ward.jobs.watch(user_id, job.job_id):  # now, then on every change
        ...
    await ward.jobs.cancel(user_id, job.job_id)

At most ``jobs_per_user_running`` of a user's jobs run at once and ``jobs_running`` in the
whole deployment (every instance sharing the store); the rest wait in order, and a user with
a long queue never starves another user's first job. A user may have at most
``jobs_per_user_queued`` waiting jobs (:class:`JobLimitExceeded`). Parameters are validated
by the kind's model before anything is queued (:class:`InvalidJobParams`). Status and
progress changes are published on the user's event channel (``{"type": "job", ...}``) when
an event hub is attached (``ward.jobs.attach_events(hub)``), which also wakes the workers of every
instance the moment a job is submitted and carries cancels to the instance running the job.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from typing import Any, Protocol

import anyio

from ..clock import iso_utc
from ..config import Settings
from ..errors import InvalidArgument, JobLimitExceeded, UnknownJob, UnknownJobKind
from ..events import EventHub, Subscription, user_channel
from ..stores.protocols import JobStore
from ..stores.records import FINISHED, JobCounts, JobRow, NewJob
from ..tokens import new_public_id
from ..validation import check_id, encode_json, possible_id
from .kinds import JobKind

log = logging.getLogger("sessionward.jobs")
WORK_CHANNEL = "jobs:work"
MAX_PARAMS_BYTES = 2 * 1024 * 1024
MAX_EVENT_RESULT_BYTES = 16 * 1024  # a larger result is left out of pushes: GET it


@dataclass(frozen=True, slots=True)
class Job:
    """A job as its owner sees it."""

    job_id: str
    kind: str
    status: str
    progress: float
    message: str
    result: Any
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int

    @classmethod
    def from_row(cls, row: JobRow) -> Job:
        result = None if row.result is None else json.loads(row.result)
        times = (row.created_at, row.started_at, row.finished_at)
        return cls(row.job_id, row.kind, row.status, row.progress, row.message, result,
                   row.error, *times, row.attempts)  # fmt: skip

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class LocalWorker(Protocol):
    """What :class:`Jobs` tells the workers of its own process."""

    def poke(self) -> None: ...

    def cancel(self, job_id: str) -> None: ...


class Jobs:
    def __init__(self, store: JobStore, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self.kinds: dict[str, JobKind] = {}
        self._events: EventHub | None = None
        self.instance = secrets.token_hex(8)  # tells this instance's own events apart
        self.workers: list[LocalWorker] = []
        self._publishing = self._publish_again = False

    @property
    def events(self) -> EventHub | None:
        """The attached event hub, if any."""
        return self._events

    def attach_events(self, hub: EventHub) -> None:
        """Publish job events on ``hub`` and wake workers through it."""
        self._events = hub

    def register(self, kind: JobKind) -> JobKind:
        if kind.name in self.kinds:
            raise InvalidArgument(f"a job kind named {kind.name!r} is registered already")
        self.kinds[kind.name] = kind
        return kind

    def describe(self) -> list[dict[str, Any]]:
        """Every registered kind: name, description and the JSON schema of its params."""
        return [kind.describe() for kind in self.kinds.values()]

    async def submit(self, user_id: str, kind: str, params: Any = None) -> Job:
        """Validate and queue a job: :class:`UnknownJobKind`, :class:`InvalidJobParams` or
        :class:`JobLimitExceeded`, and then nothing is queued."""
        found = self.kinds.get(kind) if isinstance(kind, str) else None
        if found is None:
            raise UnknownJobKind(f"no job kind named {str(kind)[:64]!r}")
        model = found.parse(params)
        text = encode_json(model.model_dump(mode="json"), "params", MAX_PARAMS_BYTES)
        new = NewJob(new_public_id(), check_id(user_id, "user_id"), kind, text, found.max_attempts)
        row = await self._store.submit_job(new, max_queued=self._settings.jobs_per_user_queued)
        if row is None:
            raise JobLimitExceeded(
                f"you have {self._settings.jobs_per_user_queued} jobs waiting already"
            )
        await self.announce(row)  # before any worker can start it: pushes stay in order
        await self.notify_work()
        return Job.from_row(row)

    async def get(self, user_id: str, job_id: str) -> Job:
        row = await self._store.get_job(user_id, job_id) if possible_id(job_id) else None
        if row is None:
            raise UnknownJob("no such job")
        return Job.from_row(row)

    async def list(self, user_id: str, *, limit: int = 100) -> list[Job]:
        """The user's jobs, newest first."""
        rows = await self._store.list_jobs(user_id, limit=min(max(limit, 1), 1000))
        return [Job.from_row(row) for row in rows]

    async def cancel(self, user_id: str, job_id: str) -> Job:
        """Cancel: a waiting job at once, a running one as soon as its worker hears of it
        (at once on this instance or through the event hub; at the latest at its next
        heartbeat). A finished job is left as it is."""
        row = await self._store.cancel_job(user_id, job_id) if possible_id(job_id) else None
        if row is None:
            raise UnknownJob("no such job")
        if row.status == "cancelling":
            for worker in self.workers:
                worker.cancel(job_id)
            await self._publish(WORK_CHANNEL, {"type": "cancel", "job_id": job_id})
        await self.announce(row)
        return Job.from_row(row)

    async def watch(self, user_id: str, job_id: str) -> AsyncGenerator[Job, None]:
        """The job now, then each time its status, progress or message changes, until it
        has finished (:class:`UnknownJob` at once if the user has no such job). Events wake
        it when a hub is attached; it also looks every ``job_poll_interval`` seconds, since
        events may be lost. Close it (``aclosing``) if you stop early."""
        async with AsyncExitStack() as stack:
            events = None
            if self.events is not None:
                events = await stack.enter_async_context(
                    self.events.subscribe(user_channel(user_id))
                )
            last: tuple[str, float, str] | None = None
            while True:
                job = await self.get(user_id, job_id)  # read after subscribing: no gap
                if (job.status, job.progress, job.message) != last:
                    last = (job.status, job.progress, job.message)
                    yield job
                if job.finished:
                    return
                await self._next_change(events, job_id)

    async def _next_change(self, events: Subscription | None, job_id: str) -> None:
        with anyio.move_on_after(self._settings.job_poll_interval):
            if events is not None:
                async for event in events:
                    if event.get("type") == "job" and event.get("job_id") == job_id:
                        return
            await anyio.sleep_forever()  # no hub, or it closed: the poll interval decides

    async def counts(self) -> JobCounts:
        return await self._store.job_counts()

    async def announce(self, row: JobRow) -> None:
        """Tell the owner's listeners (WebSocket, SSE) about a change of a job."""
        await self._publish(user_channel(row.user_id), job_event(row))

    def poke_workers(self) -> None:
        """Wake this process's workers (work arrived, or a slot came free)."""
        for worker in self.workers:
            worker.poke()

    async def notify_work(self) -> None:
        """Wake the workers of every instance (jobs were queued or became claimable). Calls
        made while a wake-up is being published are folded into one more after it: a burst
        of submits costs two publishes, and every call is followed by a publish that began
        after it."""
        self.poke_workers()
        if self._publishing:
            self._publish_again = True
            return
        self._publishing = True
        try:
            self._publish_again = True
            while self._publish_again:
                self._publish_again = False
                await self._publish(WORK_CHANNEL, {"type": "work", "from": self.instance})
        finally:
            self._publishing = False

    async def _publish(self, channel: str, message: dict[str, Any]) -> None:
        if self.events is None:
            return
        try:
            await self.events.publish(channel, message)
        except Exception as exc:  # events are best effort; the store holds the truth
            log.warning("could not publish a job event: %s", exc)


def job_json(row: JobRow | Job) -> dict[str, Any]:
    """A job as the HTTP API shows it (times in ISO 8601 UTC)."""
    job = row if isinstance(row, Job) else Job.from_row(row)

    def stamp(seconds: float | None) -> str | None:
        return None if seconds is None else iso_utc(seconds)

    return {
        "job_id": job.job_id, "kind": job.kind, "status": job.status,
        "progress": job.progress, "message": job.message, "result": job.result,
        "error": job.error, "created_at": stamp(job.created_at),
        "started_at": stamp(job.started_at), "finished_at": stamp(job.finished_at),
    }  # fmt: skip


def job_event(row: JobRow) -> dict[str, Any]:
    """The push of a job change: ``{"type": "job", ...}`` and the job as GET shows it; a
    result over 16 KiB is left out (``"result_omitted": true``), to be fetched with GET."""
    if row.result is not None and len(row.result.encode()) > MAX_EVENT_RESULT_BYTES:
        return {"type": "job", **job_json(replace(row, result=None)), "result_omitted": True}
    return {"type": "job", **job_json(row)}
