"""What this instance's requests did, counted in-process by the service's middleware:
latency over a sliding window, open WebSockets, rate-limit refusals, lockouts."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# The window keeps at most this many requests; past it the oldest drop out (the rate then
# reads as a lower bound, the percentiles as those of the latest requests).
MAX_KEPT = 20_000


@dataclass(frozen=True, slots=True)
class RequestFigures:
    rate: float
    p50: float | None
    p99: float | None


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of a sorted, non-empty list."""
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class Activity:
    """Counters one process keeps; cheap enough for every request (a deque append)."""

    def __init__(self, window: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._monotonic = monotonic
        self._requests: deque[tuple[float, float]] = deque(maxlen=MAX_KEPT)
        self.websockets = 0
        self.rate_limited = 0
        self.lockouts = 0

    def request(self, seconds: float) -> None:
        self._requests.append((self._monotonic(), seconds))

    def requests(self) -> RequestFigures:
        """Rate and latency percentiles of the requests within the window."""
        since = self._monotonic() - self.window
        while self._requests and self._requests[0][0] < since:
            self._requests.popleft()
        latencies = sorted(seconds for _, seconds in self._requests)
        if not latencies:
            return RequestFigures(0.0, None, None)
        rate = len(latencies) / self.window
        return RequestFigures(rate, percentile(latencies, 50), percentile(latencies, 99))
