"""What a handler gets: progress reporting, cancellation, its owner and its owner's state."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.from_thread

from ..errors import JobCancelled
from ..state import StateManager
from ..stores.records import StateScope

MIN_PROGRESS_INTERVAL = 0.25  # progress writes: at most four a second per job
MAX_MESSAGE = 500

Report = Callable[[float, str], Awaitable[None]]


class UserState:
    """The job owner's isolated state documents (user scope), e.g. for results."""

    def __init__(self, state: StateManager, user_id: str) -> None:
        self._state = state
        self._scope = StateScope("user", user_id)

    async def get(self, name: str) -> Any:
        doc = await self._state.get(self._scope, name)
        return None if doc is None else doc.data

    async def put(self, name: str, data: Any) -> int:
        return await self._state.put(self._scope, name, data)


class JobContext:
    """Passed to an async handler. ``await ctx.progress(0.4, "reading")``; a cancel
    interrupts the handler's awaits (it also shows in ``ctx.cancelled``)."""

    def __init__(self, job_id: str, user_id: str, attempt: int, state: UserState,
                 report: Report) -> None:  # fmt: skip
        self.job_id = job_id
        self.user = user_id
        self.attempt = attempt
        self.state = state
        self.cancelled = False
        self._report = report
        self._last = -MIN_PROGRESS_INTERVAL
        self._progress = 0.0
        self._pending: tuple[float, str] | None = None

    async def progress(self, fraction: float, message: str = "") -> None:
        """Report progress (0..1; never decreasing, a lower value counts as the last one).
        Written at most a few times a second; a value held back is written by the next
        report or by the worker's heartbeat, and 1.0 at once. NaN is a ValueError."""
        fraction = float(fraction)
        if math.isnan(fraction):
            raise ValueError("progress is a fraction from 0 to 1, not NaN")
        fraction = min(max(fraction, self._progress), 1.0)
        self._progress, message = fraction, message[:MAX_MESSAGE]
        if fraction < 1.0 and time.monotonic() - self._last < MIN_PROGRESS_INTERVAL:
            self._pending = (fraction, message)
            return
        await self._write(fraction, message)

    async def flush(self) -> None:
        """Write progress held back by the rate cap (the worker calls this)."""
        if self._pending is not None:
            await self._write(*self._pending)

    async def _write(self, fraction: float, message: str) -> None:
        self._last, self._pending = time.monotonic(), None
        await self._report(fraction, message)


class ThreadUserState:
    """:class:`UserState` for a handler in a worker thread."""

    def __init__(self, inner: UserState) -> None:
        self._inner = inner

    def get(self, name: str) -> Any:
        return anyio.from_thread.run(self._inner.get, name)

    def put(self, name: str, data: Any) -> int:
        return anyio.from_thread.run(self._inner.put, name, data)


class ThreadJobContext:
    """Passed to a handler running in a worker thread: the same, without ``await``. Look at
    ``ctx.cancelled`` between steps, or call ``ctx.check()`` to stop by raising."""

    def __init__(self, inner: JobContext) -> None:
        self._inner = inner
        self.job_id, self.user, self.attempt = inner.job_id, inner.user, inner.attempt
        self.state = ThreadUserState(inner.state)

    @property
    def cancelled(self) -> bool:
        return self._inner.cancelled

    def check(self) -> None:
        """Raise :class:`JobCancelled` if the job is being stopped (cancel or timeout)."""
        if self._inner.cancelled:
            raise JobCancelled("the job was stopped")

    def progress(self, fraction: float, message: str = "") -> None:
        anyio.from_thread.run(self._inner.progress, fraction, message)
