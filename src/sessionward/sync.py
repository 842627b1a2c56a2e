"""The blocking API, for threaded apps and Streamlit.

    ward = SyncWard("sqlite:///app.db")
    new = ward.sessions.create("alice")
    session = ward.sessions.validate(new.token)
    ward.close()

A SyncWard runs one event loop on a background thread (an anyio blocking portal) and sends
every call there; its managers are generated from the async ones, so both behave the same.
One exception: on memory:// a rate-limit decision (``ward.limits.hit``, ``peek``,
``enforce``) is made in the calling thread, under the store's lock, by the same synchronous
code the async limiter runs for that store (it needs no I/O, so no event loop either).
It is safe to share between threads. It cannot be built or called from inside a running
event loop (that loop would block): it raises :class:`~sessionward.ConfigurationError`
there, saying to use :func:`sessionward.open_ward` instead.

Background jobs: ``ward.jobs.register(kind)``, then ``ward.start_job_worker()`` runs a
:class:`~sessionward.jobs.JobWorker` on the SyncWard's event loop until ``close()``;
``ward.jobs.submit/get/list/cancel`` block like the other managers.
"""

from __future__ import annotations

from contextlib import ExitStack
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskStatus
from anyio.from_thread import start_blocking_portal

from ._portal import Portal, refuse_inside_event_loop
from ._sync_api import (
    SyncAuth,
    SyncBudgets,
    SyncJobs,
    SyncRateLimiter,
    SyncSessions,
    SyncStateManager,
    SyncUsers,
    SyncWardMethods,
)
from .clock import Clock
from .config import Settings
from .jobs import JobWorker
from .stores.protocols import Store
from .urls import StoreURL
from .ward import open_ward


class SyncWard(SyncWardMethods):
    """A :class:`~sessionward.Ward` with blocking methods. Opens the store at once."""

    def __init__(
        self,
        url: str | StoreURL | None = None,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        sweep: bool = True,
    ) -> None:
        refuse_inside_event_loop()
        self._stack = ExitStack()
        try:
            loop = self._stack.enter_context(start_blocking_portal("asyncio"))
            opening = open_ward(url, settings=settings, clock=clock, sweep=sweep)
            ward = self._stack.enter_context(loop.wrap_async_context_manager(opening))
        except BaseException:
            self._stack.close()
            raise
        self._loop = loop
        portal = Portal(loop)
        super().__init__(ward, portal)
        self.settings = ward.settings
        self.sessions = SyncSessions(ward.sessions, portal)
        self.state = SyncStateManager(ward.state, portal)
        self.users = SyncUsers(ward.users, portal)
        self.limits = SyncRateLimiter(ward.limits, portal)
        self.budgets = SyncBudgets(ward.budgets, portal)
        self.jobs = SyncJobs(ward.jobs, portal)
        self._auth: SyncAuth | None = None
        self._worker: tuple[anyio.CancelScope, anyio.Event] | None = None

    @property
    def auth(self) -> SyncAuth:
        if self._auth is None:
            self._auth = SyncAuth(self._inner.auth, self._portal)
        return self._auth

    @property
    def store(self) -> Store:
        return self._inner.store

    def start_job_worker(self) -> None:
        """Run a job worker on this SyncWard's event loop (one per process) until
        :meth:`close`, which stops it before the store closes. Register the kinds first."""
        if self._worker is not None:
            raise RuntimeError("this SyncWard runs a job worker already")
        refuse_inside_event_loop()
        self._worker = self._loop.start_task(self._run_worker)[1]
        self._stack.callback(self._loop.call, self._stop_worker)

    async def _run_worker(self, *, task_status: TaskStatus[Any]) -> None:
        stopped = anyio.Event()
        try:
            with anyio.CancelScope() as scope:
                task_status.started((scope, stopped))
                ward = self._inner
                await JobWorker(
                    ward.store, ward.jobs, ward.state, ward.settings, clock=ward.clock
                ).run()
        finally:
            stopped.set()

    async def _stop_worker(self) -> None:
        if self._worker is not None:
            scope, stopped = self._worker
            scope.cancel()
            await stopped.wait()

    def close(self) -> None:
        """Stop the job worker if one runs, close the store and stop the event loop thread."""
        self._stack.close()

    def __enter__(self) -> SyncWard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SyncWard({self._inner.store.url!r})"
