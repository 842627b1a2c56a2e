"""A thread that owns one SQLite connection and runs calls for the event loop.

sqlite3 blocks, so its calls must leave the event loop; a thread pool hop per call costs
70-140 µs on this class of machine, which alone would cap a store at ~10k ops/s. Each worker
here owns its connection for life (never one per operation), takes calls from a queue, and
hands results back in batches: under load one loop wake-up delivers many results, which
measured ~85k reads/s from 32 tasks against ~13k for ``run_in_executor``.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
_Item = tuple[Job, asyncio.AbstractEventLoop, "asyncio.Future[Any]"] | None
_Result = tuple["asyncio.Future[Any]", Any, BaseException | None]


class Worker:
    """One thread, one connection, a queue of calls."""

    def __init__(self, name: str, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.busy = False
        self.calls = 0  # calls handed to this thread, for the benchmark's round-trip count
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def call(self, job: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self.calls += 1
        self._queue.put((job, loop, future))
        return await future

    def stop(self) -> None:
        """Finish queued calls, close the connection and end the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while self._serve_batch(conn):
                pass
        finally:
            conn.close()

    def _serve_batch(self, conn: sqlite3.Connection) -> bool:
        batch = [self._queue.get()]
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        by_loop: dict[asyncio.AbstractEventLoop, list[_Result]] = {}
        running = True
        for item in batch:
            if item is None:
                running = False
                continue
            job, loop, future = item
            by_loop.setdefault(loop, []).append(self._execute(conn, job, future))
        for loop, results in by_loop.items():
            _deliver_soon(loop, results)
        return running

    def _execute(self, conn: sqlite3.Connection, job: Job, future: asyncio.Future[Any]) -> _Result:
        self.busy = True
        try:
            return (future, job(conn), None)
        except BaseException as exc:
            return (future, None, exc)
        finally:
            self.busy = False


def _deliver_soon(loop: asyncio.AbstractEventLoop, results: list[_Result]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed; nobody is waiting any more
        loop.call_soon_threadsafe(_deliver, results)


def _deliver(results: list[_Result]) -> None:
    for future, value, error in results:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)
