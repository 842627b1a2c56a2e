"""Rate-limit decisions per second beside the `limits` library: same policy, same keys, same run.

Every contender decides the same policy ("1000/second") over the same keys: a pool of 1,000
(call i uses key i % 1000, so nearly every decision is allowed) or one hot key (nearly every
decision past the first second is refused). The contenders alternate in blocks, as in
``measure.interleaved``, so that a shared VM's drift falls on all of them alike.

- memory, one worker: sessionward's async API (one task), its blocking SyncWard, and
  `limits`' blocking limiters on ``MemoryStorage``; 8 threads share one SyncWard or one
  `limits` limiter.
- Redis, one task and 32: ``ward.limits.hit`` against ``limits.aio`` limiters on
  ``async+redis://``, through redis-py (the client sessionward uses) and through coredis
  (`limits`' default async client).

Commands per decision, bytes per key and the 4-process exactness check are in
``limits_counts``.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio
from limits.aio import strategies as aio_strategies
from limits.aio.storage import MemoryStorage as AioMemoryStorage
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)

from limits import RateLimitItem, parse
from sessionward import SyncWard, open_ward
from sessionward.limits import parse_policy

from .measure import Result

POLICY_TEXT = "1000/second"
POLICY = parse_policy(POLICY_TEXT)  # parsed once, as `limits` parses its item once
ITEM = parse(POLICY_TEXT)
POOL = [f"user{n}" for n in range(1000)]
HOT = ["hot"]
KEYSETS = {"1,000 keys": POOL, "one hot key": HOT}
THREADS = 8
TASKS = 32
#: the `limits` row each figure is compared with, per store
BASELINE = {"memory": "limits moving window", "redis": "limits moving window (redis-py)"}
#: `limits` through a redis-py client set up as sessionward's is (store defaults)
BOUNDED = "limits moving window (redis-py, sessionward's pool and timeouts)"

SyncDecide = Callable[[str], bool]
AsyncDecide = Callable[[str], Awaitable[bool]]


@dataclass(frozen=True)
class Blocking:
    """A blocking decision, measured in plain threads (one or several) rather than tasks."""

    decide: SyncDecide


Contender = AsyncDecide | Blocking


@dataclass(frozen=True)
class Row:
    store: str
    keys: str
    name: str
    unit: str  # "task" or "thread"
    result: Result
    allowed: float  # share of the measured decisions that were allowed

    @property
    def workers(self) -> str:
        n = self.result.tasks
        return f"{n} {self.unit}{'s' if n > 1 else ''}"


@dataclass(frozen=True)
class Commands:
    name: str
    decisions: int
    round_trips: float  # commands sent by the client, per decision (MONITOR)
    sent: str  # which, e.g. "EVALSHA"
    evalsha: float  # EVALSHA calls per decision (INFO commandstats delta)
    script_us: float  # microseconds Redis spent in one EVALSHA (INFO commandstats delta)
    in_script: float  # commands the script ran inside Redis, per decision (MONITOR)
    script_commands: str


@dataclass(frozen=True)
class Footprint:
    store: str
    name: str
    decisions: int  # per key
    bytes_per_key: float
    how: str


@dataclass(frozen=True)
class Exactness:
    name: str
    store: str
    processes: int
    limit: int
    attempts: int
    allowed: int


@dataclass
class RateLimitResults:
    versions: str = ""
    rows: list[Row] = field(default_factory=list)
    commands: list[Commands] = field(default_factory=list)
    commands_note: str = ""
    footprint: list[Footprint] = field(default_factory=list)
    exactness: list[Exactness] = field(default_factory=list)


async def bench_ratelimit(
    urls: dict[str, str], backends: list[str], workdir: Path, *, per_task: int, quick: bool
) -> RateLimitResults:
    from .limits_counts import count_commands, exactness, memory_footprint, redis_footprint

    out = RateLimitResults(versions=_versions())
    if "memory" in backends:
        print("  rate limiting: memory throughput ...", flush=True)
        out.rows += await bench_memory(urls["memory"], per_task=per_task)
        print("  rate limiting: memory bytes per key ...", flush=True)
        out.footprint += await memory_footprint(keys=2000 if quick else 10_000)
    if "redis" in backends:
        print("  rate limiting: redis throughput ...", flush=True)
        out.rows += await bench_redis(urls["redis"], per_task=per_task)
        print("  rate limiting: redis commands per decision and bytes per key ...", flush=True)
        out.commands, out.commands_note = await count_commands(decisions=1000)
        out.footprint += await redis_footprint(urls["redis"], keys=50)
    print("  rate limiting: exactness across 4 processes ...", flush=True)
    out.exactness = await exactness(urls, backends, workdir)
    return out


def _versions() -> str:
    names = ("sessionward", "limits", "redis", "hiredis", "coredis")
    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except Exception:  # a missing optional package is simply not listed
            continue
    return ", ".join(found)


# contenders


def sessionward_async(ward: Any, policy: Any = POLICY) -> AsyncDecide:
    async def decide(key: str) -> bool:
        return bool((await ward.limits.hit(key, policy)).allowed)

    return decide


def limits_async(limiter: Any, item: RateLimitItem = ITEM) -> AsyncDecide:
    async def decide(key: str) -> bool:
        return bool(await limiter.hit(item, key))

    return decide


def limits_blocking(limiter: Any, *, stats: bool = False) -> Blocking:
    def decide(key: str) -> bool:
        allowed = limiter.hit(ITEM, key)
        if stats:  # what a middleware that sends RateLimit-* headers also asks for
            limiter.get_window_stats(ITEM, key)
        return bool(allowed)

    return Blocking(decide)


async def bench_memory(url: str, *, per_task: int) -> list[Row]:
    rows: list[Row] = []
    sync_ward = await anyio.to_thread.run_sync(lambda: SyncWard(url, sweep=False))
    try:
        async with open_ward(url, sweep=False) as ward:
            sync_hit = sync_ward.limits.hit
            syncward = Blocking(lambda k: bool(sync_hit(k, POLICY).allowed))
            moving, fixed = MovingWindowRateLimiter, FixedWindowRateLimiter
            for label, keys in KEYSETS.items():
                one: dict[str, Contender] = {
                    "sessionward, async API": sessionward_async(ward),
                    "sessionward, SyncWard": syncward,
                    "limits moving window": limits_blocking(moving(MemoryStorage())),
                    "limits moving window + window stats": limits_blocking(
                        moving(MemoryStorage()), stats=True
                    ),
                    "limits fixed window": limits_blocking(fixed(MemoryStorage())),
                    "limits sliding window counter": limits_blocking(
                        SlidingWindowCounterRateLimiter(MemoryStorage())
                    ),
                    "limits.aio moving window": limits_async(
                        aio_strategies.MovingWindowRateLimiter(AioMemoryStorage())
                    ),
                }
                found = await interleaved_mixed(one, keys, workers=1, per_worker=per_task * 4)
                rows += [_row("memory", label, name, one[name], r, ok) for name, r, ok in found]
                many: dict[str, Contender] = {
                    "sessionward, SyncWard": syncward,
                    "limits moving window": limits_blocking(moving(MemoryStorage())),
                    "limits fixed window": limits_blocking(fixed(MemoryStorage())),
                }
                found = await interleaved_mixed(
                    many, keys, workers=THREADS, per_worker=max(per_task // 2, 50)
                )
                rows += [_row("memory", label, name, many[name], r, ok) for name, r, ok in found]
    finally:
        await anyio.to_thread.run_sync(sync_ward.close)
    return rows


@dataclass(frozen=True)
class OnRedis:
    decide: AsyncDecide
    pattern: str  # SCAN pattern of its keys


async def open_redis_contenders(
    redis_url: str, stack: AsyncExitStack, *, policy: str = POLICY_TEXT
) -> dict[str, OnRedis]:
    """sessionward and `limits` on one Redis; each `limits` strategy under its own prefix
    (its strategies name their keys alike, and a list is not a counter)."""
    base, _, query = redis_url.partition("?")
    options = dict(part.split("=", 1) for part in query.split("&") if part)
    prefix = options.setdefault("key_prefix", "swbench")
    query = "&".join(f"{k}={v}" for k, v in options.items())
    ward = await stack.enter_async_context(open_ward(f"{base}?{query}", sweep=False))
    item = parse(policy)
    contenders = {
        "sessionward": OnRedis(sessionward_async(ward, parse_policy(policy)), f"{prefix}:rl:*")
    }
    strategies = (
        ("limits moving window (redis-py)", aio_strategies.MovingWindowRateLimiter, "redispy"),
        ("limits moving window (coredis)", aio_strategies.MovingWindowRateLimiter, "coredis"),
        ("limits fixed window (redis-py)", aio_strategies.FixedWindowRateLimiter, "redispy"),
        ("limits sliding window counter (redis-py)",
         aio_strategies.SlidingWindowCounterRateLimiter, "redispy"),
    )  # fmt: skip
    for n, (name, strategy, implementation) in enumerate(strategies):
        storage = storage_from_string(
            f"async+{base}", implementation=implementation, key_prefix=f"{prefix}:limits{n}"
        )
        stack.push_async_callback(_close_limits_storage, storage)
        contenders[name] = OnRedis(limits_async(strategy(storage), item), f"{prefix}:limits{n}:*")
    # sessionward's defaults: a bounded pool that waits up to 5 s, and a 5 s socket timeout
    from redis.asyncio import BlockingConnectionPool

    pool = BlockingConnectionPool.from_url(
        base, max_connections=50, timeout=5.0, socket_timeout=5.0, socket_connect_timeout=5.0
    )
    stack.push_async_callback(pool.disconnect)
    storage = storage_from_string(
        f"async+{base}", implementation="redispy", key_prefix=f"{prefix}:limits9",
        connection_pool=pool,
    )  # fmt: skip
    stack.push_async_callback(_close_limits_storage, storage)
    strategy = aio_strategies.MovingWindowRateLimiter(storage)
    contenders[BOUNDED] = OnRedis(limits_async(strategy, item), f"{prefix}:limits9:*")
    return contenders


async def _close_limits_storage(storage: Any) -> None:
    client = storage.bridge.storage
    if hasattr(client, "aclose"):  # redis-py
        await client.aclose()
        return
    closing = client.connection_pool.disconnect()  # coredis
    if hasattr(closing, "__await__"):
        await closing


async def bench_redis(url: str, *, per_task: int) -> list[Row]:
    rows: list[Row] = []
    async with AsyncExitStack() as stack:
        found_on = await open_redis_contenders(url, stack)
        contenders: dict[str, Contender] = {name: c.decide for name, c in found_on.items()}
        for label, keys in KEYSETS.items():
            for tasks, n in ((1, per_task), (TASKS, max(per_task // 8, 50))):
                found = await interleaved_mixed(contenders, keys, workers=tasks, per_worker=n)
                rows += [
                    _row("redis", label, name, contenders[name], r, ok) for name, r, ok in found
                ]
    return rows


def _row(store: str, keys: str, name: str, op: Contender, result: Result, allowed: float) -> Row:
    return Row(store, keys, name, "thread" if isinstance(op, Blocking) else "task", result, allowed)


# measurement: interleaved blocks of async tasks or plain threads


async def interleaved_mixed(
    contenders: dict[str, Contender],
    keys: list[str],
    *,
    workers: int,
    per_worker: int,
    blocks: int = 10,
    warmup: int = 200,
) -> list[tuple[str, Result, float]]:
    """Like ``measure.interleaved``, for contenders that are either coroutines (``workers``
    tasks on this event loop) or blocking calls (``workers`` threads started together).
    Returns (name, result, share allowed) per contender."""
    for op in contenders.values():
        if isinstance(op, Blocking):
            await anyio.to_thread.run_sync(_thread_block, op.decide, keys, [], 1, warmup, 0)
        else:
            await _task_block(op, keys, [], 1, warmup, 0)
    latencies: dict[str, list[int]] = {name: [] for name in contenders}
    seconds = dict.fromkeys(contenders, 0.0)
    allowed = dict.fromkeys(contenders, 0)
    block = max(per_worker // blocks, 1)
    for b in range(blocks):
        offset = b * block * workers
        for name, op in contenders.items():
            if isinstance(op, Blocking):
                spent, ok = await anyio.to_thread.run_sync(
                    _thread_block, op.decide, keys, latencies[name], workers, block, offset
                )
            else:
                spent, ok = await _task_block(op, keys, latencies[name], workers, block, offset)
            seconds[name] += spent
            allowed[name] += ok
    found = []
    for name in contenders:
        result = to_result(name, workers, latencies[name], seconds[name])
        found.append((name, result, allowed[name] / result.ops))
    return found


def to_result(name: str, workers: int, latencies: list[int], seconds: float) -> Result:
    cuts = statistics.quantiles(latencies, n=100)  # as measure.interleaved reports them
    return Result(name, workers, len(latencies), seconds, cuts[49] / 1000, cuts[98] / 1000)


async def _task_block(
    op: AsyncDecide, keys: list[str], into: list[int], tasks: int, n: int, offset: int
) -> tuple[float, int]:
    allowed = 0
    size = len(keys)

    async def worker(start: int) -> None:
        nonlocal allowed
        ok = 0
        for i in range(start, start + n):
            key = keys[i % size]
            began = time.perf_counter_ns()
            ok += await op(key)
            into.append(time.perf_counter_ns() - began)
        allowed += ok

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for t in range(tasks):
            group.start_soon(worker, offset + t * n)
    return time.perf_counter() - started, allowed


def _thread_block(
    decide: SyncDecide, keys: list[str], into: list[int], threads: int, n: int, offset: int
) -> tuple[float, int]:
    """``threads`` threads released together, each making ``n`` decisions; the block lasts
    from the first start to the last finish."""
    size = len(keys)
    gate = threading.Barrier(threads)
    spans: list[tuple[float, float]] = []
    parts: list[list[int]] = [[] for _ in range(threads)]
    counts = [0] * threads

    def worker(t: int) -> None:
        mine, ok, start = parts[t], 0, offset + t * n
        gate.wait()
        began = time.perf_counter()
        for i in range(start, start + n):
            key = keys[i % size]
            t0 = time.perf_counter_ns()
            ok += decide(key)
            mine.append(time.perf_counter_ns() - t0)
        spans.append((began, time.perf_counter()))
        counts[t] = ok

    if threads == 1:
        worker(0)
    else:
        running = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        for thread in running:
            thread.start()
        for thread in running:
            thread.join()
    for part in parts:
        into.extend(part)
    return max(end for _, end in spans) - min(start for start, _ in spans), sum(counts)
