"""The samples of the last hour (by default) of one instance, in a bounded ring."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator

from .sample import Sample


class History:
    """At most ``seconds / interval`` samples; the oldest drop out."""

    def __init__(self, seconds: float, interval: float) -> None:
        self._samples: deque[Sample] = deque(maxlen=max(1, math.ceil(seconds / interval)))

    @property
    def capacity(self) -> int:
        return self._samples.maxlen or 0

    def add(self, sample: Sample) -> None:
        self._samples.append(sample)

    def latest(self) -> Sample | None:
        return self._samples[-1] if self._samples else None

    def since(self, at: float) -> list[Sample]:
        """The samples taken at or after ``at``, oldest first."""
        return [s for s in self._samples if s.at >= at]

    def __iter__(self) -> Iterator[Sample]:
        return iter(list(self._samples))

    def __len__(self) -> int:
        return len(self._samples)
