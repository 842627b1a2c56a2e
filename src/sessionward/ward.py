"""The facade an application holds: every manager over one store.

    async with open_ward("sqlite:///app.db") as ward:
        new = await ward.sessions.create("alice")
        session = await ward.sessions.validate(new.token)
        await ward.state.put(session.scope(), "prefs", {"theme": "dark"})

``open_ward`` opens the store (creating or migrating its schema), starts the background
sweeper, and closes everything on exit. Threaded code uses :class:`sessionward.SyncWard`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from ._groups import collapse_single_errors
from .auth.keys import load_keys
from .auth.manager import Auth
from .auth.passwords import Passwords
from .budgets import Budgets
from .capacity import CapacityMonitor
from .clock import Clock, SystemClock
from .config import Settings
from .errors import SessionwardError
from .jobs.manager import Jobs
from .limits import RateLimiter
from .sessions import Sessions
from .state import StateManager
from .stores import create_store
from .stores.protocols import Store
from .stores.records import PoolStats
from .urls import StoreURL
from .users import Users

log = logging.getLogger("sessionward")


@dataclass(frozen=True, slots=True)
class CleanupReport:
    sessions: int
    limits: int = 0
    holds: int = 0


class Ward:
    """Every manager over one store. Build it with :func:`open_ward`."""

    def __init__(self, store: Store, settings: Settings, clock: Clock | None = None) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock or SystemClock()
        self.sessions = Sessions(store, settings)
        self.limits = RateLimiter(store)
        self.budgets = Budgets(store, settings)
        self.jobs = Jobs(store, settings)
        self.state = StateManager(store, settings)
        self.passwords = Passwords(settings)
        self.users = Users(store, self.sessions, self.passwords)
        # no I/O until its run() or sample(): docs/capacity.md
        self.capacity = CapacityMonitor(store, settings, clock=self.clock)
        self._auth: Auth | None = None

    @property
    def auth(self) -> Auth:
        """Login, refresh and token checks. Built on first use, because it needs the signing
        secret (``ConfigurationError`` if a shared store has none)."""
        if self._auth is None:
            self._auth = Auth(
                self.store,
                self.settings,
                sessions=self.sessions,
                users=self.users,
                passwords=self.passwords,
                limits=self.limits,
                keys=load_keys(self.settings, self.store.url),
                clock=self.clock,
            )
        return self._auth

    @property
    def backend(self) -> str:
        return self.store.backend

    async def ping(self) -> float:
        """Round-trip latency to the store, in seconds."""
        return await self.store.ping()

    def pool_stats(self) -> PoolStats:
        return self.store.pool_stats()

    async def cleanup(self) -> CleanupReport:
        """Delete expired records now, in bounded batches."""
        sessions = await self.sessions.sweep()
        limits = await self.store.sweep_limits(self.settings.sweep_batch_size)
        holds = await self.budgets.sweep()
        return CleanupReport(sessions=sessions, limits=limits, holds=holds)

    async def run_sweeper(self) -> None:
        """Sweep every ``sweep_interval`` seconds until cancelled; failures are logged."""
        while True:
            await anyio.sleep(self.settings.sweep_interval)
            try:
                report = await self.cleanup()
            except SessionwardError as exc:
                log.warning("sweep failed: %s", exc)
            else:
                if report.sessions:
                    log.info("swept %d expired sessions", report.sessions)

    def __repr__(self) -> str:
        return f"Ward({self.store.url!r})"


@asynccontextmanager
async def open_ward(
    url: str | StoreURL | None = None,
    *,
    settings: Settings | None = None,
    clock: Clock | None = None,
    sweep: bool = True,
) -> AsyncIterator[Ward]:
    """Open a :class:`Ward` on ``url`` (default: ``settings.store``).

    ``clock`` is for tests: memory and SQLite always use it; Redis and PostgreSQL use the
    server's clock unless it is given. ``sweep=False`` leaves expiry to :meth:`Ward.cleanup`.
    """
    settings = settings or Settings.defaults()
    store = create_store(url if url is not None else settings.store, clock=clock)
    await store.open()
    try:
        ward = Ward(store, settings, clock)
        async with collapse_single_errors(), anyio.create_task_group() as tasks:
            if sweep:
                tasks.start_soon(ward.run_sweeper)
            yield ward
            tasks.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()
