"""The Redis store's users and GCRA limits (a base of :class:`~.redis.RedisStore`).

A user's record lives in the user's slot (``P:{u:U}:user``); the username index
(``P:{usernames}``, username_key to user id, and ``P:{usernames}:sorted`` for ordered pages)
in another, so registration cannot be one script. It is three crash-safe steps:

1. ``user_create.lua`` writes the record and an *unclaimed* mark next to it, unless the id
   is taken (then ``None``).
2. ``user_claim.lua`` claims the username in both index keys at once. If another user owns
   it, registration fails and deletes its record and mark, unless that owner's record is
   missing: such an entry is left over (a record is always written before its claim), so
   it is taken over, compare-and-set on the stale owner.
3. The mark is deleted.

A crash after step 1 leaves a record nobody can reach: lookups by name and pages go through
the index, ``get_user`` sees the mark and finds no claim, and the username stays free. A
crash after step 2 leaves a claimed user with its mark: whoever meets the mark checks the
index, finds the claim and deletes the mark. An index entry whose record is missing reads
as absent everywhere. Users never expire.

Round trips: ``get_user`` 1 (``MGET`` of record and mark), ``find_user`` 2 (index, record),
``list_users`` 2 per page, ``update_user`` 1 (a compare-and-set script), ``create_user`` 3.
A GCRA decision is one script over all its keys, or less than one: concurrent decisions share
a call (:class:`GcraLane`); ``reset_limits`` is one pipeline.
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
from ..records import GcraCheck, GcraResult, NewUserRow, UserChange, UserRow
from ..retry import Retrier
from .connection import Lease, RedisConnection, pack_command
from .keys import optional, roles_json, user_from_json

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
    """The GCRA decisions of one store, sent through its :class:`~.redis_conn.Lease`, with
    the decisions of concurrent callers coalesced into one script call.

    A decision made while no call is in flight is sent at once, from the caller's own task:
    nothing waits for company. Decisions made while a call is in flight queue, and go together
    in the next call, in arrival order, as soon as it returns (after the callers it answered
    have run on, so that their next decisions join too). lua/gcra.lua decides them one after
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
        (see lua/gcra.lua)."""
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
    """A check's numbers for lua/gcra.lua (exact: ``repr`` round-trips a float); a policy's
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


class RedisAccounts(RedisConnection):
    def __init__(self, url: StoreURL, *, clock: Clock | None = None) -> None:
        super().__init__(url, clock=clock)
        self._gcra = GcraLane(self._lease, self._scripts["limits_gcra"], self._retry)
        self._limit_keys: dict[str, str] = {}

    async def aclose(self) -> None:
        await self._gcra.close()
        await super().aclose()

    # users

    async def create_user(self, new: NewUserRow) -> UserRow | None:
        record = self._keys.account(new.user_id)
        args = [self._now(), new.user_id, new.username, new.username_key, new.password_hash]
        args.append(roles_json(new.roles))
        # not repeated: a second attempt would find the first's record and report "taken"
        reply = await self._script("user_create", record, args, idempotent=False)
        if len(reply) == 1:
            return None  # the id is taken
        if not await self._claim(new.username_key, new.user_id):
            await self._call(lambda: self._client.delete(*record))
            return None
        with contextlib.suppress(StorageError):
            # The user exists once the claim landed; a mark left behind is healed by readers.
            await self._call(lambda: self._client.delete(record[1]))
        return user_from_json(reply[1])

    async def _claim(self, username_key: str, user_id: str) -> bool:
        owner = await self._claim_as(username_key, user_id, stale="")
        if owner != user_id:
            found = await self._call(lambda: self._client.exists(self._keys.account(owner)[0]))
            if not found:
                owner = await self._claim_as(username_key, user_id, stale=owner)
        return owner == user_id

    async def _claim_as(self, username_key: str, user_id: str, *, stale: str) -> str:
        # repeatable: a claim that landed answers its own repetition with the same owner
        args = [username_key, user_id, stale]
        return str(await self._script("user_claim", self._keys.usernames(), args))

    async def _claimed(self, row: UserRow) -> bool:
        """Whether an unclaimed-marked user's claim landed after all; if so, drop the mark."""
        if await self._owner(row.username_key) != row.user_id:
            return False
        await self._call(lambda: self._client.delete(self._keys.account(row.user_id)[1]))
        return True

    async def get_user(self, user_id: str) -> UserRow | None:
        keys = self._keys.account(user_id)
        raw, unclaimed = await self._call(lambda: self._client.mget(keys))
        if raw is None:
            return None
        row = user_from_json(raw)
        if unclaimed is not None and not await self._claimed(row):
            return None
        return row

    async def find_user(self, username_key: str) -> UserRow | None:
        owner = await self._owner(username_key)
        if owner is None:
            return None
        raw = await self._call(lambda: self._client.get(self._keys.account(owner)[0]))
        return _indexed(None if raw is None else str(raw), username_key, owner)

    async def _owner(self, username_key: str) -> str | None:
        index = self._keys.usernames()[0]
        owner = await self._call(lambda: self._client.hget(index, username_key))
        return None if owner is None else str(owner)  # str already: decode_responses

    async def list_users(self, *, after: str | None, limit: int) -> list[UserRow]:
        rows: list[UserRow] = []
        while len(rows) < limit:  # entries without a record are skipped: read on
            want = limit - len(rows)
            args = [optional(after), str(want)]
            flat = await self._script("user_list", self._keys.usernames(), args)
            page = list(zip(flat[::2], flat[1::2], strict=True))
            rows += await self._records(page)
            if len(page) < want:
                break
            after = page[-1][0]
        return rows

    async def _records(self, page: list[tuple[str, str | None]]) -> list[UserRow]:
        """The users of a page of the index (one pipeline: records are in many slots)."""
        owned = [(key, owner) for key, owner in page if owner is not None]
        if not owned:
            return []

        async def op() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for _, owner in owned:
                pipe.get(self._keys.account(owner)[0])
            replies: list[Any] = await pipe.execute()
            return replies

        raws = await self._call(op)
        found = (_indexed(raw, *entry) for entry, raw in zip(owned, raws, strict=True))
        return [row for row in found if row is not None]

    async def update_user(self, user_id: str, change: UserChange) -> UserRow | None:
        reply = await self._update(user_id, change)
        if reply[1] == "unclaimed":
            if not await self._claimed(user_from_json(reply[2])):
                return None
            reply = await self._update(user_id, change)
        return user_from_json(reply[2]) if reply[1] == "updated" else None

    async def _update(self, user_id: str, change: UserChange) -> list[Any]:
        roles = None if change.roles is None else roles_json(change.roles)
        disabled = "" if change.disabled is None else str(int(change.disabled))
        args = [self._now(), optional(change.expected_hash)]
        args += [optional(change.password_hash or None), optional(roles), disabled]
        # a compare-and-set on the hash may not be repeated: it would conflict with itself
        retry = change.expected_hash is None
        keys = self._keys.account(user_id)
        reply: list[Any] = await self._script("user_update", keys, args, idempotent=retry)
        return reply

    # limits

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


def _indexed(raw: str | None, username_key: str, owner: str) -> UserRow | None:
    """The record an index entry names, if it is there and is that entry's user."""
    if raw is None:
        return None
    row = user_from_json(raw)
    return row if (row.user_id, row.username_key) == (owner, username_key) else None
