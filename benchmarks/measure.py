"""Timing loops: ops/s and latency percentiles, one task or many at once."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

Op = Callable[[int], Awaitable[object]]


@dataclass(frozen=True)
class Result:
    name: str
    tasks: int
    ops: int
    seconds: float
    p50_us: float
    p99_us: float

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds


async def measure(name: str, op: Op, *, tasks: int, per_task: int, warmup: int = 200) -> Result:
    """Run ``op(i)`` ``per_task`` times in each of ``tasks`` concurrent tasks."""
    for i in range(warmup):
        await op(i)
    latencies: list[int] = []

    async def worker(offset: int) -> None:
        for i in range(per_task):
            started = time.perf_counter_ns()
            await op(offset + i)
            latencies.append(time.perf_counter_ns() - started)

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for t in range(tasks):
            group.start_soon(worker, t * per_task)
    seconds = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return Result(name, tasks, len(latencies), seconds, cuts[49] / 1000, cuts[98] / 1000)


def sync_measure(name: str, op: Callable[[int], object], *, ops: int, warmup: int = 200) -> Result:
    """The same for a blocking call, one thread."""
    for i in range(warmup):
        op(i)
    latencies = []
    started = time.perf_counter()
    for i in range(ops):
        t0 = time.perf_counter_ns()
        op(i)
        latencies.append(time.perf_counter_ns() - t0)
    seconds = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return Result(name, 1, ops, seconds, cuts[49] / 1000, cuts[98] / 1000)
