"""What the job tests share: test kinds, a ward with a running worker, deadline polls, and
worker processes (spawned, so they run on a store the way another instance would)."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict

from sessionward import Settings, open_ward
from sessionward.events import open_event_hub
from sessionward.jobs import JobContext, JobError, JobKind, JobWorker, ThreadJobContext
from sessionward.jobs.builtin import BUILTIN
from sessionward.stores.records import JobRow
from sessionward.testing import wait_until_async
from sessionward.ward import Ward

# short leases and quick polls, so that a dead worker's job comes back within a second or two
FAST = {"job_lease": 1.5, "job_heartbeat": 0.2, "job_poll_interval": 0.05}
SPAWN = multiprocessing.get_context("spawn")


class Seconds(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    seconds: float = 0.1


@dataclass
class Recorder:
    """A kind that logs when each of its jobs starts and ends, with the store's counts at
    each start: the running set at every transition, from the handlers' point of view."""

    ward: Ward
    name: str = "record"
    log: list[tuple[str, str, str, float]] = field(default_factory=list)
    store_running: list[int] = field(default_factory=list)
    user_running: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def kind(self) -> JobKind:
        return JobKind(self.name, self.handle, Seconds)

    async def handle(self, ctx: JobContext, params: Seconds) -> dict[str, str]:
        self._note("start", ctx)
        counts = await self.ward.jobs.counts()
        mine = [j for j in await self.ward.jobs.list(ctx.user) if j.status in RUNNING]
        with self.lock:
            self.store_running.append(counts.running)
            self.user_running.append(len(mine))
        await anyio.sleep(params.seconds)
        self._note("end", ctx)
        return {"job": ctx.job_id}

    def _note(self, what: str, ctx: JobContext) -> None:
        with self.lock:
            self.log.append((what, ctx.user, ctx.job_id, time.monotonic()))


RUNNING = ("running", "cancelling")


def peaks(log: list[tuple[str, str, str, float]]) -> tuple[int, dict[str, int]]:
    """The largest running set, overall and per user, replaying the log in time order."""
    running: dict[str, set[str]] = {}
    overall, per_user = 0, {}
    for what, user, job, _ in sorted(log, key=lambda e: (e[3], e[0] == "start")):
        jobs = running.setdefault(user, set())
        if what == "start":
            jobs.add(job)
        else:
            jobs.discard(job)
        overall = max(overall, sum(len(j) for j in running.values()))
        per_user[user] = max(per_user.get(user, 0), len(jobs))
    return overall, per_user


async def spin(ctx: JobContext, params: Seconds) -> dict[str, float]:
    """Async work that only a cancel or the timeout stops early."""
    await anyio.sleep(params.seconds)
    return {"slept": params.seconds}


def spin_thread(ctx: ThreadJobContext, params: Seconds) -> dict[str, int]:
    """Blocking work in a thread, checking for a cancel between steps."""
    steps, until = 0, time.monotonic() + params.seconds
    while time.monotonic() < until:
        ctx.check()
        time.sleep(0.005)  # the work itself
        steps += 1
    return {"steps": steps}


def spin_process(params: dict[str, Any]) -> dict[str, float]:
    time.sleep(float(params["seconds"]))  # the work itself, in a pool process
    return {"slept": float(params["seconds"])}


async def boom(ctx: JobContext, params: Seconds) -> None:
    raise RuntimeError("internal detail: /srv/secret.txt at 0x7f00")


async def refuse(ctx: JobContext, params: Seconds) -> None:
    raise JobError("the input has no header line")


async def not_json(ctx: JobContext, params: Seconds) -> object:
    return {"when": time}  # a module is no JSON


async def save(ctx: JobContext, params: Seconds) -> dict[str, str]:
    result = {"job": ctx.job_id, "attempt": str(ctx.attempt)}
    await ctx.state.put("last_result", result)
    return result


def save_thread(ctx: ThreadJobContext, params: Seconds) -> dict[str, Any]:
    ctx.state.put("thread_result", {"job": ctx.job_id})
    return {"saved": ctx.state.get("thread_result")}


async def steps(ctx: JobContext, params: Seconds) -> dict[str, int]:
    """Progress that goes back and forth: the job must only ever show it rising."""
    for fraction in (0.2, 0.1, 0.5, 0.3, 0.8):
        await ctx.progress(fraction, f"at {fraction}")
        await anyio.sleep(params.seconds)
    return {"done": 1}


async def hang_once(ctx: JobContext, params: Seconds) -> dict[str, int]:
    """Hangs on its first attempt (until its worker is stopped or killed), then finishes."""
    await ctx.progress(0.5 if ctx.attempt == 1 else 0.6, f"attempt {ctx.attempt}")
    if ctx.attempt == 1:
        await anyio.sleep(60)
    return {"attempt": ctx.attempt}


_RAN: set[str] = set()  # jobs whose first run started in this process


async def has_run(job_id: str) -> bool:
    """Whether a ``hang_first`` handler has started the job in this process."""
    return job_id in _RAN


def _first_run(job_id: str) -> bool:
    first = job_id not in _RAN
    _RAN.add(job_id)
    return first


async def hang_first(ctx: JobContext, params: Seconds) -> dict[str, int]:
    """Hangs on its first run in this process (until its worker stops), then finishes. A
    job handed back on a clean stop keeps its attempt number, so only the run tells."""
    first = _first_run(ctx.job_id)
    await ctx.progress(0.5, "first run" if first else "again")
    if first:
        await anyio.sleep(60)
    return {"attempt": ctx.attempt}


def hang_first_thread(ctx: ThreadJobContext, params: Seconds) -> dict[str, int]:
    """:func:`hang_first` in a thread, which sees the worker stop through ``ctx.check()``."""
    if _first_run(ctx.job_id):
        while True:
            ctx.check()
            time.sleep(0.005)  # the work itself
    return {"attempt": ctx.attempt}


#: Set by a test to let the stubborn thread handler of each job return.
LET_GO = threading.Event()


def stubborn_thread(ctx: ThreadJobContext, params: Seconds) -> dict[str, int]:
    """A thread handler that ignores a stop on its first run until the test lets it go."""
    if _first_run(ctx.job_id):
        LET_GO.wait(60)  # the work itself, deaf to ctx.cancelled
    return {"attempt": ctx.attempt}


def all_kinds() -> list[JobKind]:
    return [
        *BUILTIN,
        JobKind("spin", spin, Seconds, timeout=60),
        JobKind("spin_thread", spin_thread, Seconds, executor="thread", timeout=60),
        JobKind("spin_process", spin_process, Seconds, executor="process", timeout=60),
        JobKind("slow", spin, Seconds, timeout=0.3),
        JobKind("slow_thread", spin_thread, Seconds, executor="thread", timeout=0.3),
        JobKind("boom", boom, Seconds),
        JobKind("refuse", refuse, Seconds),
        JobKind("not_json", not_json, Seconds),
        JobKind("save", save, Seconds),
        JobKind("save_thread", save_thread, Seconds, executor="thread"),
        JobKind("steps", steps, Seconds),
        JobKind("hang_once", hang_once, Seconds),
        JobKind("hang_once_1", hang_once, Seconds, max_attempts=1),
        JobKind("hang_first_1", hang_first, Seconds, max_attempts=1),
        JobKind("stubborn_thread", stubborn_thread, Seconds, executor="thread", timeout=60),
        JobKind(
            "hang_first_thread",
            hang_first_thread,
            Seconds,
            executor="thread",
            max_attempts=1,
            timeout=60,
        ),
    ]


Extra = Callable[[Ward], list[JobKind]]


@asynccontextmanager
async def running(
    url: str, settings: Settings, *, extra: Extra | None = None, worker: bool = True,
    slots: int | None = None,
) -> AsyncIterator[Ward]:  # fmt: skip
    """A ward on ``url`` with an event hub, the test kinds (and ``extra``'s) registered and,
    with ``worker``, a worker running."""
    async with (
        open_ward(url, settings=settings, sweep=False) as ward,
        open_event_hub(url) as events,
        anyio.create_task_group() as tasks,
    ):
        ward.jobs.attach_events(events)
        for kind in all_kinds() + (extra(ward) if extra else []):
            ward.jobs.register(kind)
        if worker:
            tasks.start_soon(worker_on(ward, slots=slots).run)
        yield ward
        tasks.cancel_scope.cancel()


def worker_on(ward: Ward, *, slots: int | None = None) -> JobWorker:
    """A worker over ``ward``'s store, jobs and state (not started)."""
    return JobWorker(
        ward.store, ward.jobs, ward.state, ward.settings, clock=ward.clock, slots=slots
    )


@asynccontextmanager
async def worker_in(ward: Ward, *, slots: int | None = None) -> AsyncIterator[JobWorker]:
    """A worker running on ``ward`` for the block."""
    worker = worker_on(ward, slots=slots)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker.run)
        yield worker
        tasks.cancel_scope.cancel()


async def until(check: Callable[[], Awaitable[bool]], deadline: float = 10.0,
                what: str = "the condition") -> float:  # fmt: skip
    """Poll ``check`` until it holds; the seconds it took, or AssertionError at the deadline."""
    return await wait_until_async(check, timeout=deadline, what=what)


async def status_is(ward: Ward, user: str, job_id: str, *statuses: str) -> bool:
    return (await ward.jobs.get(user, job_id)).status in statuses


async def row(ward: Ward, user: str, job_id: str) -> JobRow:
    found = await ward.store.get_job(user, job_id)
    assert found is not None
    return found


# worker processes


def start_worker_process(url: str, settings: dict[str, Any], *, slots: int | None = None,
                         record: bool = False, hold: bool = False) -> tuple[Any, Any]:  # fmt: skip
    """A spawned process running a worker with the test kinds (and a Recorder, ``record``)
    until told to stop; returns ``(process, pipe)`` once it is ready. With ``hold`` its
    worker starts only on :func:`go`. :func:`stop_worker_process` returns the recorder's
    log, counts at each start, and the user's running jobs at each start."""
    parent, child = SPAWN.Pipe()
    proc = SPAWN.Process(target=_worker_main, args=(url, settings, slots, record, hold, child),
                         daemon=True)  # fmt: skip
    proc.start()
    if not parent.poll(60):
        proc.kill()
        raise AssertionError("the worker process did not start within 60 s")
    assert parent.recv() == "ready"
    return proc, parent


def go(pipe: Any) -> None:
    pipe.send("go")


def stop_worker_process(proc: Any, pipe: Any) -> Any:
    pipe.send("stop")
    assert pipe.poll(60), "the worker process did not answer"
    result = pipe.recv()
    proc.join(60)
    return result


def _worker_main(url: str, settings: dict[str, Any], slots: int | None, record: bool,
                 hold: bool, pipe: Any) -> None:  # fmt: skip
    anyio.run(_worker_child, url, settings, slots, record, hold, pipe)


async def _worker_child(url: str, settings: dict[str, Any], slots: int | None, record: bool,
                        hold: bool, pipe: Any) -> None:  # fmt: skip
    recorders: list[Recorder] = []

    def recorder_kind(ward: Ward) -> list[JobKind]:
        recorders.append(Recorder(ward))
        return [recorders[0].kind()] if record else []

    async with running(url, Settings(**settings), extra=recorder_kind, worker=False) as ward:
        recorder = recorders[0]
        pipe.send("ready")
        if hold:
            assert await anyio.to_thread.run_sync(pipe.recv) == "go"
        async with worker_in(ward, slots=slots):
            assert await anyio.to_thread.run_sync(pipe.recv) == "stop"
        with recorder.lock:
            pipe.send((recorder.log, recorder.store_running, recorder.user_running))
