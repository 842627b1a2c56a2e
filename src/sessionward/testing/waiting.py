"""Waiting for a condition in tests: poll it until it holds, up to a deadline.

    wait_until(lambda: ward.jobs.counts().running == 0, timeout=60, what="the jobs ending")
    await wait_until_async(lambda: status_is(ward, "alice", job_id, "running"))

Never a fixed sleep: the poll returns as soon as the condition holds, and fails with a
sentence naming what did not happen once ``timeout`` seconds have passed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio

POLL = 0.005


def wait_until(
    predicate: Callable[[], object],
    *,
    timeout: float = 10.0,
    what: str = "the condition",
    interval: float = POLL,
) -> float:
    """Poll ``predicate`` from a thread until it is true; the seconds it took, or
    :class:`AssertionError` at the deadline."""
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(interval)  # a poll, bounded by the deadline
    return time.monotonic() - began


async def wait_until_async(
    predicate: Callable[[], Awaitable[object]],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 (the poll's deadline: its failure names `what`)
    what: str = "the condition",
    interval: float = POLL,
) -> float:
    """Await ``predicate`` until it is true; the seconds it took, or :class:`AssertionError`
    at the deadline."""
    began = time.monotonic()
    while not await predicate():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        await anyio.sleep(interval)  # a poll, bounded by the deadline
    return time.monotonic() - began
