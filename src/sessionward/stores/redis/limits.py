"""The Redis store's GCRA limits (a base of :class:`~.store.RedisStore`).

A GCRA decision is one script (``lua/limits_gcra.lua``, which restates
``rules.limits.gcra_candidate``) over all its keys, or less than one: concurrent decisions
share a call (:class:`GcraLane`), sent through the connection the store's
:class:`~.connection.Lease` keeps; ``reset_limits`` is one pipeline. Every limiter key expires
at its TAT, after which it means nothing, so there is nothing to sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors

from ...clock import Clock
from ...errors import StorageError, StorageUnavailable
from ...urls import StoreURL
from ..records import GcraCheck, GcraResult
from ..retry import Retrier
from .connection import Lease, RedisConnection, pack_command

#: Decisions per script call at most (Redis runs one in about 7 µs, and nothing else while a
#: script runs); those queued beyond wait for the next call.
MAX_BATCH = 64


@dataclass(slots=True)
class _Queued:
    keys: list[str]
    spec: str
    idempotent: bool
    future: asyncio.Future[tuple[str, str]]


class GcraLane:
    """The GCRA decisions of one store, sent through its :class:`~.connection.Lease`, with
    the decisions of concurrent callers coalesced into one script call.

    A decision made while no call is in flight is sent at once, from the caller's own task:
    nothing waits for company. Decisions made while a call is in flight queue, and go together
    in the next call, in arrival order, as soon as it returns (after the callers it answered
    have run on, so that their next decisions join too). lua/limits_gcra.lua decides them one after
    another, each atomic and all or none as a call of its own, and answers each on its own; a
    decision that fails there fails alone. One call is in flight at a time.

    A call carries decisions that store (never repeated: a repetition could count twice) or
    peeks (repeated on transient failures, as a peek alone is), never both. A call that fails
    fails each of its callers with the error that caller's call alone would have raised.
    """

    def __init__(self, lease: Lease, script: Any, retry: Retrier) -> None:
        self._lease = lease
        self._sha: str = script.sha
        self._source: str = script.script
        self._retry = retry
        self._busy = False  # a call is in flight, or about to be sent for the queue
        self._queue: list[_Queued] = []
        self._flusher: asyncio.Task[None] | None = None

    async def decide(self, keys: list[str], spec: str, *, idempotent: bool) -> tuple[str, str]:
        """The server's time (or '' if the decision brought its own) and the decision's answer
        (see lua/limits_gcra.lua)."""
        if self._busy:
            future: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
            self._queue.append(_Queued(keys, spec, idempotent, future))
            return await future
        self._busy = True
        try:
            if idempotent:
                reply = await self._retry(lambda: self._send(keys, (spec,)), idempotent=True)
            else:  # sent once, as the Retrier would (with one frame less on the hot path)
                try:
                    reply = await self._send(keys, (spec,))
                except Exception as exc:
                    raise self._retry.wrap(exc) from exc
        finally:
            self._next()
        return reply[0], reply[1]

    async def _send(self, keys: list[str], specs: Sequence[str]) -> list[str]:
        packed = pack_command("EVALSHA", self._sha, str(len(keys)), *keys, *specs)
        try:
            reply: list[str] = await self._lease.call(packed)
        except redis_errors.NoScriptError:  # a flushed or restarted server: nothing ran
            await self._lease.call(pack_command("SCRIPT", "LOAD", self._source))
            reply = await self._lease.call(packed)
        return reply

    def _next(self) -> None:
        if self._queue:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        else:
            self._busy = False

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._take()
                if batch:
                    await self._run(batch)
                await asyncio.sleep(0)  # the callers just answered run on, and may queue again
        finally:
            self._busy, self._flusher = False, None
            queued, self._queue = self._queue, []  # left only if this task was cancelled
            for each in queued:
                if not each.future.done():
                    each.future.set_exception(StorageUnavailable("the redis store was closed"))

    def _take(self) -> list[_Queued]:
        """The next call's decisions: the oldest, and those of its kind queued after it."""
        queue, n = self._queue, 1
        while n < len(queue) and n < MAX_BATCH and queue[n].idempotent == queue[0].idempotent:
            n += 1
        batch, self._queue = queue[:n], queue[n:]
        return [each for each in batch if not each.future.done()]  # a cancelled caller's

    async def _run(self, batch: list[_Queued]) -> None:
        keys = [key for each in batch for key in each.keys]
        specs = [each.spec for each in batch]
        try:
            reply = await self._retry(
                lambda: self._send(keys, specs), idempotent=batch[0].idempotent
            )
            if len(reply) != 1 + len(batch):
                raise StorageError(f"the redis store answered {len(reply) - 1} of {len(batch)}")
        except Exception as exc:  # a StorageError: the Retrier wraps the rest
            error = exc
            if not isinstance(exc, StorageError):
                error = self._retry.wrap(exc)
                error.__cause__ = exc
            for each in batch:
                if not each.future.done():
                    each.future.set_exception(_own_copy(error))
            return
        except BaseException:
            for each in batch:
                if not each.future.done():
                    each.future.set_exception(StorageUnavailable("the redis store was closed"))
            raise
        now = reply[0]
        for each, answer in zip(batch, reply[1:], strict=True):
            if not each.future.done():
                each.future.set_result((now, answer))

    async def close(self) -> None:
        """Fail the queued decisions and the call in flight for them (a lone call in flight
        fails when the lease cuts its connection)."""
        queued, self._queue = self._queue, []
        for each in queued:
            if not each.future.done():
                each.future.set_exception(StorageUnavailable("the redis store was closed"))
        flusher = self._flusher
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher


def _own_copy(exc: Exception) -> Exception:
    """The same error for one more caller (raising writes the caller's frames into it)."""
    clone = copy.copy(exc)
    clone.__cause__, clone.__traceback__ = exc.__cause__, None
    return clone


_CHECK_ARGS: dict[tuple[float, float, float], str] = {}


def _check_args(check: GcraCheck) -> str:
    """A check's numbers for lua/limits_gcra.lua (exact: ``repr`` round-trips a float); a policy's
    are the same at every call, so they are formatted once."""
    numbers = (check.period, check.capacity, check.cost)
    text = _CHECK_ARGS.get(numbers)
    if text is None:
        text = f" {float(check.period)!r} {float(check.capacity)!r} {float(check.cost)!r}"
        if len(_CHECK_ARGS) >= 1024:
            _CHECK_ARGS.clear()
        _CHECK_ARGS[numbers] = text
    return text


_ONE = {"1": (True,), "0": (False,)}
_FLAGS: dict[str, tuple[bool, ...]] = {}


def _flags(text: str) -> tuple[bool, ...]:
    flags = _FLAGS.get(text)
    if flags is None:
        flags = tuple(flag == "1" for flag in text)
        if len(text) <= 8:  # a policy's limits: few patterns, worth keeping
            _FLAGS[text] = flags
    return flags


class RedisLimits(RedisConnection):
    def __init__(self, url: StoreURL, *, clock: Clock | None = None) -> None:
        super().__init__(url, clock=clock)
        self._gcra = GcraLane(self._lease, self._scripts["limits_gcra"], self._retry)
        self._limit_keys: dict[str, str] = {}

    async def gcra(self, checks: Sequence[GcraCheck], *, apply: bool = True) -> GcraResult:
        # One script call (shared with concurrent decisions), all or none. Each limiter key is
        # in its own cluster slot: on Redis Cluster the keys of one call would need a common
        # hash tag. One check (a policy of one limit) is the common case: it takes a shorter
        # way, which a decision's few microseconds of Python notice.
        now = self._now()
        head = f"{now or '-'} {'1' if apply else '0'}"
        if len(checks) == 1:
            check = checks[0]
            keys, spec = [self._limit_key(check.key)], head + _check_args(check)
        else:
            keys = [self._limit_key(check.key) for check in checks]
            spec = head + "".join(map(_check_args, checks))
        # a decision that stores TATs must not be repeated: it would count twice
        if self._cluster:  # redis-py's cluster client routes it (no lease, no coalescing)
            reply = await self._script("limits_gcra", keys, [spec], idempotent=not apply)
            server_now, answer = reply[0], reply[1]
        else:
            server_now, answer = await self._gcra.decide(keys, spec, idempotent=not apply)
        if answer[:1] == "!":
            error = redis_errors.ResponseError(answer[1:])
            raise self._retry.wrap(error) from error
        at = float(now or server_now)
        if len(checks) == 1:  # "<flag> <tat>"
            return GcraResult(_ONE[answer[0]], (float(answer[2:]),), at)
        flags, *tats = answer.split(" ")
        return GcraResult(_flags(flags), tuple(map(float, tats)), at)

    def _limit_key(self, key: str) -> str:
        """A limiter key's Redis key (the same few keys come back again and again, and a
        limiter's ``<key>#<n>`` always needs base64: up to 2,048 are remembered)."""
        found = self._limit_keys.get(key)
        if found is None:
            found = self._keys.limit(key)
            if len(self._limit_keys) >= 2048:
                self._limit_keys.clear()
            self._limit_keys[key] = found
        return found

    async def reset_limits(self, keys: Sequence[str]) -> None:
        await self._delete_each([self._keys.limit(key) for key in keys])

    async def sweep_limits(self, limit: int) -> int:
        return 0  # every limiter key expires at its TAT, after which it means nothing
