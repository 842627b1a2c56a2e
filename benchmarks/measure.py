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


async def interleaved(
    ops: dict[str, Op], *, tasks: int, per_task: int, blocks: int = 10, warmup: int = 200
) -> list[Result]:
    """Measure several operations in alternating blocks, so that the drift of a shared VM
    falls on all of them alike; each gets ``per_task`` calls per task in all."""
    for op in ops.values():
        for i in range(warmup):
            await op(i)
    latencies: dict[str, list[int]] = {name: [] for name in ops}
    seconds = dict.fromkeys(ops, 0.0)
    block = max(per_task // blocks, 1)
    for b in range(blocks):
        for name, op in ops.items():
            seconds[name] += await _block(op, latencies[name], tasks, block, b * block * tasks)
    return [_result(name, tasks, latencies[name], seconds[name]) for name in ops]


async def _block(op: Op, into: list[int], tasks: int, per_task: int, offset: int) -> float:
    async def worker(start: int) -> None:
        for i in range(per_task):
            began = time.perf_counter_ns()
            await op(start + i)
            into.append(time.perf_counter_ns() - began)

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for t in range(tasks):
            group.start_soon(worker, offset + t * per_task)
    return time.perf_counter() - started


def _result(name: str, tasks: int, latencies: list[int], seconds: float) -> Result:
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
    return _result(name, 1, latencies, time.perf_counter() - started)
