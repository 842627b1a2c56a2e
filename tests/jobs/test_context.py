"""What a handler reports through its context: progress that only rises, bounded, finite."""

from __future__ import annotations

import math

import pytest

from sessionward.jobs.context import MAX_MESSAGE, JobContext, UserState

pytestmark = pytest.mark.anyio


def _context(written: list[tuple[float, str]]) -> JobContext:
    async def report(fraction: float, message: str) -> None:
        written.append((fraction, message))

    return JobContext("job-1", "alice", 1, UserState(None, "alice"), report)  # type: ignore[arg-type]


async def test_progress_is_clamped_into_zero_to_one_and_never_falls() -> None:
    written: list[tuple[float, str]] = []
    ctx = _context(written)
    await ctx.progress(-3.0, "start")
    await ctx.flush()
    await ctx.progress(math.inf, "x" * (MAX_MESSAGE + 10))
    await ctx.progress(0.2, "late")
    await ctx.flush()
    assert written[0] == (0.0, "start")
    assert written[1] == (1.0, "x" * MAX_MESSAGE)
    assert all(fraction == 1.0 for fraction, _ in written[1:])


async def test_nan_progress_is_refused_and_writes_nothing() -> None:
    written: list[tuple[float, str]] = []
    ctx = _context(written)
    with pytest.raises(ValueError, match="NaN"):
        await ctx.progress(math.nan)
    await ctx.flush()
    assert written == []
