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

from .clock import Clock
from .config import Settings
from .errors import SessionwardError
from .sessions import Sessions
from .state import StateManager
from .stores import create_store
from .stores.base import PoolStats, Store
from .urls import StoreURL

log = logging.getLogger("sessionward")


@dataclass(frozen=True, slots=True)
class CleanupReport:
    sessions: int


class Ward:
    """Every manager over one store. Build it with :func:`open_ward`."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.sessions = Sessions(store, settings)
        self.state = StateManager(store, settings)

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
        return CleanupReport(sessions=await self.sessions.sweep())

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
        ward = Ward(store, settings)
        async with _collapse_single_errors(), anyio.create_task_group() as tasks:
            if sweep:
                tasks.start_soon(ward.run_sweeper)
            yield ward
            tasks.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()


@asynccontextmanager
async def _collapse_single_errors() -> AsyncIterator[None]:
    # The app's code runs inside our task group; its exception should reach it unwrapped.
    try:
        yield
    except BaseExceptionGroup as group:
        while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
            group = group.exceptions[0]
        raise group from None
