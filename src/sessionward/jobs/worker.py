"""A job worker: claims jobs within the slot limits, runs them, keeps their leases alive.

    async with anyio.create_task_group() as tasks:
        worker = JobWorker(ward.store, ward.jobs, ward.state, ward.settings, clock=ward.clock)
        tasks.start_soon(worker.run)

Each process runs one worker (the service starts it). It holds up to ``job_worker_slots``
jobs at once; the store decides the per-user and deployment-wide limits over every instance.
It claims when woken (a job submitted on this instance, or on another one through the event
hub; a slot freed here) and otherwise every ``job_poll_interval`` seconds. A running job
holds a lease that the worker's heartbeat renews every ``job_heartbeat`` seconds; the
heartbeat also learns of cancels made on other instances (as do events, at once). Any
worker's reaper turns jobs whose lease ran out (their worker died) into ``interrupted``,
claimable again in their place in the queue, or ``failed`` once ``max_attempts`` is spent,
so slots never leak. Finished jobs are purged after ``job_retention`` seconds.

When a worker stops cleanly (its task is cancelled, e.g. the service shuts down on SIGTERM),
it stops its jobs and hands them back at once (``JobStore.release_jobs``, bounded by
``job_release_timeout``): they are queued again in their place without using up an attempt,
and any instance may claim them right away. A thread handler that has not returned by then
keeps its job until the lease runs out (it may still be writing), as do the jobs of a worker
that died: those are reaped and run again once their lease runs out.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.to_process
import anyio.to_thread
from pydantic import BaseModel

from ..clock import Clock, SystemClock
from ..config import Settings
from ..errors import InvalidArgument, JobCancelled, JobError, SessionwardError, StorageError
from ..stores.records import JobLimits, JobRow, JobStatus
from ..validation import encode_json
from .context import JobContext, ThreadJobContext, UserState
from .kinds import JobKind
from .manager import WORK_CHANNEL

if TYPE_CHECKING:
    from ..state import StateManager
    from ..stores.protocols import JobStore
    from .manager import Jobs

log = logging.getLogger("sessionward.jobs")
MAX_RESULT_BYTES = 1024 * 1024
MAX_ERROR = 500
REAP_BATCH = 100
Outcome = tuple[JobStatus, str | None, str | None]


class _ThreadGate:
    """Whether a thread handler may still start. A clean stop hands a thread job back only
    once its handler can no longer start or has returned, so it never runs twice at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = self._closed = False
        self.done = threading.Event()

    def enter(self) -> bool:
        """In the thread, before the handler: whether it may run."""
        with self._lock:
            self._started = not self._closed
            return self._started

    def close(self) -> bool:
        """No start from now on; whether the handler is not running (never started, or
        returned)."""
        with self._lock:
            self._closed = True
            return not self._started or self.done.is_set()


@dataclass(eq=False)
class _Running:
    row: JobRow
    kind: JobKind
    ctx: JobContext
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    cancel_requested: bool = False
    timed_out: bool = False
    lost: bool = False  # its lease ran out and the store took it back
    gate: _ThreadGate | None = None  # a thread handler's


class _Pushes:
    """The worker's pushes to the jobs' owners, published one at a time, in order. A push
    still waiting when a newer one of the same job comes is replaced by it: under load an
    owner may miss a step (the ``running`` of a job that ended at once), but never sees an
    older state after a newer one, and always gets the last."""

    def __init__(self, jobs: Jobs) -> None:
        self._jobs = jobs
        self._waiting: dict[str, JobRow] = {}
        self._ready = anyio.Event()

    def put(self, row: JobRow) -> None:
        self._waiting[row.job_id] = row
        self._ready.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready = anyio.Event()
            await self.flush()

    async def flush(self) -> None:
        while self._waiting:
            await self._jobs.announce(self._waiting.pop(next(iter(self._waiting))))


class JobWorker:
    def __init__(
        self,
        store: JobStore,
        jobs: Jobs,
        state: StateManager,
        settings: Settings,
        *,
        clock: Clock | None = None,
        worker_id: str | None = None,
        slots: int | None = None,
        on_finished: Callable[[JobRow], None] | None = None,
    ) -> None:
        s = self._settings = settings
        self._on_finished = on_finished  # told of each job this worker ends (metrics)
        self.worker_id = worker_id or f"w-{secrets.token_hex(6)}"
        self.slots = slots or s.job_worker_slots or s.jobs_running
        self._store, self._jobs, self._state = store, jobs, state
        self._clock = clock or SystemClock()
        self._limits = JobLimits(s.jobs_per_user_running, s.jobs_running)
        self._lease, self._beat, self._poll = s.job_lease, s.job_heartbeat, s.job_poll_interval
        self._running: dict[str, _Running] = {}
        self._pushes = _Pushes(jobs)
        self._wake: anyio.Event | None = None
        self._threads: anyio.CapacityLimiter | None = None
        self._tasks: anyio.abc.TaskGroup | None = None
        self._beat_ok = time.monotonic()

    @property
    def running(self) -> list[str]:
        """The ids of the jobs this worker is running."""
        return list(self._running)

    async def run(self) -> None:
        """Work until cancelled."""
        self._wake, self._threads = anyio.Event(), anyio.CapacityLimiter(self.slots)
        self._jobs.workers.append(self)
        try:
            async with anyio.create_task_group() as tasks:
                self._tasks = tasks
                loops = (self._claim_loop, self._heartbeat_loop, self._reap_loop, self._pushes.run)
                for loop in loops:
                    tasks.start_soon(loop)
                if self._jobs.events is not None:
                    tasks.start_soon(self._listen)
        finally:
            self._jobs.workers.remove(self)
            self._tasks = None
            with anyio.CancelScope(shield=True):
                await self._hand_back()
                with anyio.move_on_after(1):
                    await self._pushes.flush()  # the last pushes (jobs that just ended)

    async def _hand_back(self) -> None:
        """A clean stop: give the jobs this worker was running back to the queue at once,
        their attempt not charged, and wake the workers of every instance. Bounded by
        ``job_release_timeout`` (half of it for thread handlers to return); a job not
        handed back is reaped after its lease."""
        jobs = [job for job in self._running.values() if not job.lost]
        self._running.clear()
        busy = [job.gate for job in jobs if job.gate is not None and not job.gate.close()]
        ended = [job.row.job_id for job in jobs if job.gate not in busy]
        timeout = self._settings.job_release_timeout
        with anyio.move_on_after(timeout / 2):
            for job in jobs:
                if job.gate in busy:
                    assert job.gate is not None
                    await anyio.to_thread.run_sync(job.gate.done.wait, abandon_on_cancel=True)
                    ended.append(job.row.job_id)
        if not ended:
            return
        with anyio.move_on_after(timeout):
            try:
                released = await self._store.release_jobs(self.worker_id, ended)
            except StorageError as exc:
                log.warning("could not hand back jobs %s: %s", ", ".join(ended), exc)
                return
            for row in released:
                log.info("job %s handed back on a clean stop: now %s", row.job_id, row.status)
                self._pushes.put(row)
            if released:
                await self._jobs.notify_work()

    def poke(self) -> None:
        """Look for work now (a submit, a free slot)."""
        if self._wake is not None:
            self._wake.set()

    def cancel(self, job_id: str) -> None:
        """Stop a job this worker runs (its status is ``cancelling`` in the store)."""
        job = self._running.get(job_id)
        if job is not None:
            job.cancel_requested = True
            self._stop(job)

    def _stop(self, job: _Running) -> None:
        job.ctx.cancelled = True
        if job.kind.executor != "thread":  # a thread cannot be interrupted: it sees the flag
            job.scope.cancel()

    # claiming

    async def _claim_loop(self) -> None:
        while True:
            self._wake = anyio.Event()
            free = self.slots - len(self._running)
            if free > 0 and len(await self._claim(free)) == free:
                continue  # there may be more
            with anyio.move_on_after(self._poll):
                await self._wake.wait()

    async def _claim(self, want: int) -> list[JobRow]:
        try:
            claimed = await self._store.claim_jobs(self.worker_id, want=want, limits=self._limits,
                                                   lease=self._lease)  # fmt: skip
        except StorageError as exc:
            log.warning("claiming jobs failed: %s", exc)
            return []
        for row in claimed:
            self._start(row)
        return claimed

    def _start(self, row: JobRow) -> None:
        assert self._tasks is not None
        kind = self._jobs.kinds.get(row.kind)
        if kind is None:  # queued by an instance that knows a kind this one does not
            outcome: Outcome = ("failed", None, f"no worker knows the job kind {row.kind}")
            self._tasks.start_soon(self._finish, row, outcome)
            return
        job = _Running(row, kind, self._context(row))
        self._running[row.job_id] = job
        self._tasks.start_soon(self._run, job)

    def _context(self, row: JobRow) -> JobContext:
        async def report(fraction: float, message: str) -> None:
            await self._progress(row.job_id, fraction, message)

        state = UserState(self._state, row.user_id)
        return JobContext(row.job_id, row.user_id, row.attempts, state, report)

    # running

    async def _run(self, job: _Running) -> None:
        try:
            self._pushes.put(job.row)
            outcome = await self._attempt(job)
        except anyio.get_cancelled_exc_class():
            # The worker is stopping: the job stays in _running, and run() hands it back. A
            # thread handler sees ctx.cancelled and should return.
            job.ctx.cancelled = True
            raise
        if job.lost:  # not ours to finish: it runs again elsewhere
            self._running.pop(job.row.job_id, None)
            self._jobs.poke_workers()
            return
        with anyio.CancelScope(shield=True):
            await self._finish(job.row, outcome)

    async def _attempt(self, job: _Running) -> Outcome:
        kind = job.kind
        try:
            params = kind.params.model_validate_json(job.row.params)
            value = await self._call(job, params)
        except JobCancelled:
            return self._stopped(job)
        except Exception as exc:
            if job.ctx.cancelled:  # whatever a handler raises while being stopped
                return self._stopped(job)
            if isinstance(exc, JobError):
                return "failed", None, str(exc)[:MAX_ERROR] or "the job failed"
            log.exception("job %s (%s) failed", job.row.job_id, kind.name)
            return "failed", None, "the job failed unexpectedly"
        if job.ctx.cancelled:
            return self._stopped(job)
        try:
            return "succeeded", encode_json(value, "result", MAX_RESULT_BYTES), None
        except InvalidArgument as exc:
            log.error("job %s (%s) returned no usable result: %s", job.row.job_id, kind.name, exc)
            return "failed", None, "the job's result is not plain JSON of at most 1 MiB"

    async def _call(self, job: _Running, params: BaseModel) -> Any:
        kind = job.kind
        if kind.executor == "thread":
            return await self._in_thread(job, params)
        job.scope.deadline = anyio.current_time() + kind.timeout
        with job.scope:
            if kind.executor == "process":
                data = params.model_dump(mode="json")
                return await anyio.to_process.run_sync(kind.handler, data, cancellable=True)
            return await kind.handler(job.ctx, params)
        # the scope stopped the handler: a cancel, a lost claim, or the timeout
        job.timed_out = not (job.cancel_requested or job.lost)
        job.ctx.cancelled = True
        return None

    async def _in_thread(self, job: _Running, params: BaseModel) -> Any:
        async def watchdog() -> None:
            await anyio.sleep(job.kind.timeout)
            job.timed_out = not job.ctx.cancelled
            job.ctx.cancelled = True

        handler, ctx, gate = job.kind.handler, ThreadJobContext(job.ctx), _ThreadGate()
        job.gate = gate

        def call() -> Any:
            if not gate.enter():  # the worker stopped before the thread began
                return None
            try:
                return handler(ctx, params)
            finally:
                gate.done.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watchdog)
            try:
                # abandon_on_cancel: only the worker stopping cancels this call
                return await anyio.to_thread.run_sync(
                    call, abandon_on_cancel=True, limiter=self._threads
                )
            finally:
                tasks.cancel_scope.cancel()

    def _stopped(self, job: _Running) -> Outcome:
        if job.timed_out:
            return "failed", None, f"the job took longer than {job.kind.timeout:g} s"
        return "cancelled", None, None

    async def _progress(self, job_id: str, fraction: float, message: str) -> None:
        job = self._running.get(job_id)
        if job is None:
            return
        try:
            status = await self._store.progress_job(job_id, self.worker_id, fraction, message)
        except StorageError as exc:
            log.warning("could not record progress of %s: %s", job_id, exc)
            return
        if status is None:  # the lease ran out and the job was taken back: stop it here
            log.warning("job %s is no longer held by worker %s; stopping it", job_id,
                        self.worker_id)  # fmt: skip
            job.lost = True
            self._stop(job)
            return
        if status == "cancelling":
            self.cancel(job_id)
        progress = max(job.row.progress, fraction)
        job.row = replace(job.row, status=status, progress=progress, message=message)
        self._pushes.put(job.row)

    async def _finish(self, row: JobRow, outcome: Outcome) -> None:
        self._running.pop(row.job_id, None)
        try:
            done = await self._store.finish_job(row.job_id, self.worker_id, *outcome)
        except SessionwardError as exc:  # the lease runs out; the reaper will settle it
            log.warning("could not record the end of job %s: %s", row.job_id, exc)
            done = None
        self._jobs.poke_workers()  # a slot came free
        if done is not None:
            self._pushes.put(done)
            if self._on_finished is not None:
                self._on_finished(done)

    # keeping leases, reaping the dead, hearing other instances

    async def _heartbeat_loop(self) -> None:
        while True:
            await anyio.sleep(self._beat)
            for job in list(self._running.values()):
                await job.ctx.flush()
            await self._heartbeat()

    async def _heartbeat(self) -> None:
        if not self._running:
            self._beat_ok = time.monotonic()
            return
        try:
            cancelling = await self._store.heartbeat_jobs(self.worker_id, list(self._running),
                                                          self._lease)  # fmt: skip
        except StorageError as exc:
            log.warning("heartbeat failed: %s", exc)
            if time.monotonic() - self._beat_ok > self._lease:
                self._give_up()
            return
        self._beat_ok = time.monotonic()
        for job_id in cancelling:
            self.cancel(job_id)

    def _give_up(self) -> None:
        """The leases ran out unrenewed: other workers may run these jobs now."""
        for job in list(self._running.values()):
            log.warning("job %s: its lease ran out while the store was unreachable", job.row.job_id)
            job.lost = True
            self._stop(job)

    async def _reap_loop(self) -> None:
        settings = self._settings
        while True:
            await anyio.sleep(max(self._lease / 3, self._beat))
            try:
                reaped = await self._store.reap_jobs(limit=REAP_BATCH)
                for row in reaped:
                    log.warning("job %s lost its worker: now %s", row.job_id, row.status)
                    await self._jobs.announce(row)
                if reaped:
                    await self._jobs.notify_work()
                cutoff = self._clock.now() - settings.job_retention
                await self._store.purge_jobs(finished_before=cutoff, limit=REAP_BATCH)
            except StorageError as exc:
                log.warning("reaping jobs failed: %s", exc)

    async def _listen(self) -> None:
        assert self._jobs.events is not None
        async with self._jobs.events.subscribe(WORK_CHANNEL) as events:
            async for event in events:
                if event.get("type") == "cancel":
                    self.cancel(str(event.get("job_id")))
                elif event.get("from") != self._jobs.instance:  # ours poked us already
                    self.poke()
