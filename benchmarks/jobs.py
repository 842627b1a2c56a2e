"""Background jobs per backend: submit-to-start latency, no-op jobs per second through one
instance and two, and cancel latency.

- Submit to start: with free slots, one job at a time, the time from the ``submit`` call to
  the handler's first line. *Same instance*: the worker runs beside the submitter and is
  woken in-process. *Other instance*: the submitter and the worker are two wards (two event
  hubs, as two servers would have) on one store, so the worker hears of the job through
  the store's notifications (Redis pub/sub, PostgreSQL LISTEN/NOTIFY); SQLite has none
  between instances, so its worker finds the job at its next poll (``job_poll_interval``).
- Throughput: each instance is a process that submits its share of no-op jobs from 32 tasks
  (over 200 users) while its worker runs them; the default limits (8 running, 3 per user).
  The figure is every job of every instance over the wall time, first submit to last finish.
- Cancel: a running job (async, same instance; a thread job; a job on the other instance),
  from the ``cancel`` call to ``cancelled`` in the store, default heartbeat (1 s).
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict

from sessionward import Settings, open_ward
from sessionward.events import open_event_hub
from sessionward.jobs import JobContext, JobKind, JobWorker, ThreadJobContext
from sessionward.ward import Ward

from .measure import Result

SUBMITTERS = 32
USERS = 200
SETTLE = 0.02  # seconds between latency samples, for the worker's claim after a finish


def job_user(n: int) -> str:
    return f"u{n % USERS}"


SPAWN = multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class JobResults:
    latency: list[Result]  # submit to start (p50/p99); the raw notification round trip
    throughput: list[Result]  # jobs/s (ops, seconds)
    cancel: list[Result]  # cancel to cancelled (p50/p99 and worst in seconds)
    worst_cancel_ms: dict[str, float]


class Mark(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    n: int = 0
    seconds: float = 0.0


class Started:
    """The moment each job's handler began, by the job's ``n``."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}
        self.events: dict[int, anyio.Event] = {}

    def kinds(self) -> list[JobKind]:
        return [JobKind("mark", self.mark, Mark), JobKind("noop", noop, Mark),
                JobKind("hold", hold, Mark), JobKind("hold_thread", hold_thread, Mark,
                                                     executor="thread")]  # fmt: skip

    async def mark(self, ctx: JobContext, params: Mark) -> None:
        self.at[params.n] = time.perf_counter()
        self.events.setdefault(params.n, anyio.Event()).set()

    async def wait(self, n: int) -> float:
        with anyio.fail_after(30):
            await self.events.setdefault(n, anyio.Event()).wait()
        return self.at[n]


async def noop(ctx: JobContext, params: Mark) -> None:
    return None


async def hold(ctx: JobContext, params: Mark) -> None:
    await anyio.sleep(params.seconds)


def hold_thread(ctx: ThreadJobContext, params: Mark) -> None:
    until = time.monotonic() + params.seconds
    while time.monotonic() < until and not ctx.cancelled:
        time.sleep(0.002)


@asynccontextmanager
async def instance(url: str, settings: Settings, started: Started, *,
                   worker: bool = True) -> AsyncIterator[Ward]:  # fmt: skip
    """A ward with its own event hub (as one server has) and, with ``worker``, a worker."""
    async with (
        open_ward(url, settings=settings, sweep=False) as ward,
        open_event_hub(url) as hub,
        anyio.create_task_group() as tasks,
    ):
        ward.jobs.attach_events(hub)
        for kind in started.kinds():
            ward.jobs.register(kind)
        if worker:
            tasks.start_soon(
                JobWorker(ward.store, ward.jobs, ward.state, ward.settings, clock=ward.clock).run
            )
        yield ward
        tasks.cancel_scope.cancel()


async def bench_jobs(url: str, backend: str, *, jobs: int, samples: int) -> JobResults:
    settings = Settings(jobs_per_user_queued=100_000, sessions_per_user=100)
    latency = [await _latency(url, settings, samples, other=False)]
    if backend != "memory":
        latency.append(await _latency(url, settings, samples // 2, other=True))
    if backend in ("redis", "postgresql"):
        latency.append(await raw_notification(url, backend, samples))
    throughput = [await _throughput(url, 1, jobs)]
    if backend != "memory":
        throughput.append(await _throughput(url, 2, jobs // 2))
    cancel, worst = await _cancels(url, settings, backend, rounds=max(samples // 20, 5))
    return JobResults(latency, throughput, cancel, worst)


async def _latency(url: str, settings: Settings, samples: int, *, other: bool) -> Result:
    started = Started()
    times: list[float] = []
    async with (
        instance(url, settings, started, worker=not other) as submitter,
        instance(url, settings, started, worker=other),
    ):
        await anyio.sleep(0.2)  # the worker's first claim and the hubs' listeners are up
        for n in range(samples):
            began = time.perf_counter()
            job = await submitter.jobs.submit(job_user(n), "mark", {"n": n})
            times.append(await started.wait(n) - began)
            # The next submit waits until this job is finished and the worker has settled:
            # else the claim that follows a finish would pick it up, unnotified.
            while not (await submitter.jobs.get(job_user(n), job.job_id)).finished:
                await anyio.sleep(0.001)
            await anyio.sleep(SETTLE)
    name = "submit to start, other instance" if other else "submit to start, same instance"
    return _latencies(name, times)


def _latencies(name: str, seconds: list[float]) -> Result:
    cuts = statistics.quantiles(seconds, n=100) if len(seconds) > 1 else seconds * 99
    return Result(name, 1, len(seconds), sum(seconds), cuts[49] * 1e6, cuts[98] * 1e6)


async def _throughput(url: str, instances: int, per_instance: int) -> Result:
    gate, answers = SPAWN.Barrier(instances), SPAWN.Queue()
    procs = [SPAWN.Process(target=_instance_main, args=(url, i, per_instance, gate, answers))
             for i in range(instances)]  # fmt: skip
    for proc in procs:
        proc.start()
    try:
        got = [await anyio.to_thread.run_sync(answers.get, True, 600) for _ in procs]
    finally:
        for proc in procs:
            proc.join(60)
            if proc.is_alive():
                proc.kill()
    failures = [g for g in got if isinstance(g, str)]
    assert not failures, failures
    began, ended = min(g[0] for g in got), max(g[1] for g in got)
    total = instances * per_instance
    name = f"no-op jobs, {instances} instance{'s' if instances > 1 else ''}"
    return Result(name, instances, total, ended - began, 0.0, 0.0)


def _instance_main(url: str, i: int, jobs: int, gate: Any, answers: Any) -> None:
    try:
        answers.put(anyio.run(_instance, url, i, jobs, gate))
    except BaseException as exc:
        answers.put(f"{type(exc).__name__}: {exc}")


async def _instance(url: str, i: int, jobs: int, gate: Any) -> tuple[float, float]:
    settings = Settings(jobs_per_user_queued=100_000)
    async with instance(url, settings, Started()) as ward:
        await anyio.sleep(0.2)
        await anyio.to_thread.run_sync(gate.wait)
        began = time.monotonic()

        async def submitter(s: int) -> None:
            for n in range(s, jobs, SUBMITTERS):
                await ward.jobs.submit(f"u{i}-{n % USERS}", "noop", {"n": n})

        async with anyio.create_task_group() as tasks:
            for s in range(SUBMITTERS):
                tasks.start_soon(submitter, s)
        while True:  # everyone's jobs, not only this instance's: the last to see 0 ends it
            counts = await ward.jobs.counts()
            if counts.running == counts.queued == 0:
                return began, time.monotonic()
            await anyio.sleep(0.005)


async def _cancels(url: str, settings: Settings, backend: str,
                   rounds: int) -> tuple[list[Result], dict[str, float]]:  # fmt: skip
    started = Started()
    modes = [("async job, same instance", "hold", False), ("thread job", "hold_thread", False)]
    if backend != "memory":
        modes.append(("async job, other instance", "hold", True))
    results, worst = [], {}
    async with (
        instance(url, settings, started) as runner,
        instance(url, settings, started, worker=False) as remote,
    ):
        for name, kind, other in modes:
            canceller = remote if other else runner
            took = [await _cancel_once(runner, canceller, kind) for _ in range(rounds)]
            results.append(_latencies(f"cancel, {name}", took))
            worst[name] = max(took) * 1000
    return results, worst


async def _cancel_once(runner: Ward, canceller: Ward, kind: str) -> float:
    """Start a job on ``runner``'s worker, cancel it through ``canceller``."""
    job = await runner.jobs.submit("canceller", kind, {"seconds": 60.0})
    while (await runner.jobs.get("canceller", job.job_id)).status != "running":
        await anyio.sleep(0.005)
    began = time.perf_counter()
    await canceller.jobs.cancel("canceller", job.job_id)
    while (await runner.jobs.get("canceller", job.job_id)).status != "cancelled":
        await anyio.sleep(0.002)
    return time.perf_counter() - began


# the raw baseline: one notification from one connection to another, through the driver


async def raw_notification(url: str, backend: str, samples: int) -> Result:
    """Publish-to-receive of a bare Redis PUBLISH / PostgreSQL NOTIFY, as the notification
    transport's own floor for *submit to start, other instance*."""
    from sessionward.urls import parse_store_url

    parsed = parse_store_url(url)
    times = await (_raw_redis(parsed, samples) if backend == "redis" else _raw_pg(parsed, samples))
    return _latencies(RAW_NOTIFY[backend], times)


RAW_NOTIFY = {"redis": "raw PUBLISH to message", "postgresql": "raw NOTIFY to notification"}


async def _raw_redis(parsed: Any, samples: int) -> list[float]:
    from redis.asyncio import Redis

    from sessionward.stores.redis.connection import connection_kwargs

    kwargs = {k: v for k, v in connection_kwargs(parsed.options).items()
              if k not in ("connection_class", "retry")}  # fmt: skip
    publisher, listener = Redis(**kwargs), Redis(**kwargs)
    pubsub: Any = listener.pubsub()
    times = []
    try:
        await pubsub.subscribe("swbench:raw")
        await pubsub.get_message(timeout=5)  # the subscribe confirmation
        for n in range(samples):
            began = time.perf_counter()
            await publisher.publish("swbench:raw", str(n))
            while (await pubsub.get_message(timeout=5)) is None:
                pass
            times.append(time.perf_counter() - began)
    finally:
        await pubsub.aclose()
        await publisher.aclose()
        await listener.aclose()
    return times


async def _raw_pg(parsed: Any, samples: int) -> list[float]:
    import psycopg

    from sessionward.stores.postgres.connection import conninfo

    info = conninfo(parsed.options)
    times = []
    async with (
        await psycopg.AsyncConnection.connect(info, autocommit=True) as listener,
        await psycopg.AsyncConnection.connect(info, autocommit=True) as sender,
    ):
        await listener.execute("LISTEN swbench_raw")
        # closed before the connection: an open generator holds its lock, and close waits
        async with aclosing(listener.notifies()) as notifies:
            for n in range(samples):
                began = time.perf_counter()
                await sender.execute(f"NOTIFY swbench_raw, '{n}'")
                await anext(notifies)
                times.append(time.perf_counter() - began)
    return times
