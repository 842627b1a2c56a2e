"""Time sources.

Policy code never calls ``time.time()`` directly: it takes a :class:`Clock`, so tests drive
time with :class:`FakeClock` instead of sleeping. Distributed stores (Redis, PostgreSQL) use
the server's clock unless a clock is injected explicitly, so that app servers with skewed
clocks still agree.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


def iso_utc(seconds: float) -> str:
    """Seconds since the epoch as ISO 8601 in UTC: ``2026-11-21T06:48:02.123456Z``."""
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


class Clock(Protocol):
    """Wall-clock seconds since the epoch, and a monotonic reading for durations."""

    def now(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def __repr__(self) -> str:
        return "SystemClock()"


class FakeClock:
    """A clock that moves only when told to; safe to share between threads.

    >>> clock = FakeClock(1_000.0)
    >>> clock.advance(30)
    >>> clock.now()
    1030.0
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        return self.now()

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a FakeClock only moves forward")
        with self._lock:
            self._now += seconds

    def set(self, now: float) -> None:
        with self._lock:
            if now < self._now:
                raise ValueError("a FakeClock only moves forward")
            self._now = float(now)

    def __repr__(self) -> str:
        return f"FakeClock({self.now()!r})"
