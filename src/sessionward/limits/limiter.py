"""The rate limiter: GCRA decisions made atomically in the store.

    limits = ward.limits
    decision = await limits.hit("ip:203.0.113.9", "20/second;600/minute")
    if not decision.allowed: ...                       # or: await limits.enforce(...)

Each limit of a policy keeps one TAT under ``<key>#<n>``; all limits of a policy are decided
in one atomic store step (all consume or none does). Distributed stores decide on their own
clock, so app servers with skewed clocks share one budget.

**When the store fails**, a limit either fails *closed* (raise
:class:`~sessionward.errors.StorageUnavailable`: refuse, the default, right for logins and
writes) or *open* (allow, marked ``degraded`` and counted in ``stats.failed_open``). After a
failure the limiter stops asking the store for ``retry_interval`` seconds (failing fast the
same way), then asks again: recovery is noticed by the next request, with no help.

**A store that decides without I/O** (memory://: a lock and a dict) is asked synchronously,
through :class:`DirectLimiter`: the async methods have nothing to await, and
:class:`~sessionward.SyncWard`'s threads decide in their own thread, under the store's lock,
instead of hopping to its event loop. The decisions, stats and failure handling are the same.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from ..errors import InvalidArgument, RateLimited, StorageError, StorageUnavailable
from ..stores.protocols import LimitStore
from ..stores.records import GcraCheck, GcraResult
from .policy import Decision, Policy, decide, decide_one, parse_policy

FailMode = Literal["open", "closed"]
MAX_LIMITS = 8  # limits per policy: reset() clears this many slots of a key
MAX_KEY = 512


@dataclass
class LimiterStats:
    decisions: int = 0
    refused: int = 0
    failed_open: int = 0
    failed_closed: int = 0
    store_errors: int = 0


@runtime_checkable
class DirectLimitStore(Protocol):
    """A store whose GCRA decisions never wait (no I/O): it answers them synchronously,
    given the keys, ``(period, capacity)`` per key and the cost of every check, as
    ``(allowed, candidate TATs, now)``; for one key, with one of each."""

    def gcra_keys_now(
        self,
        keys: Sequence[str],
        params: Sequence[tuple[float, float]],
        cost: float,
        apply: bool = True,
    ) -> tuple[tuple[bool, ...], tuple[float, ...], float]: ...

    def gcra_one_now(
        self, key: str, period: float, capacity: float, cost: float, apply: bool = True
    ) -> tuple[bool, float, float]: ...


class RateLimiter:
    def __init__(self, store: LimitStore, *, retry_interval: float = 0.5) -> None:
        self._store = store
        self._retry_interval = retry_interval
        self._down_until = 0.0
        self.stats = LimiterStats()
        #: the synchronous path, when the store has one (SyncWard's twin calls it too)
        self._direct = DirectLimiter(self, store) if isinstance(store, DirectLimitStore) else None

    @property
    def store_down(self) -> bool:
        return time.monotonic() < self._down_until

    async def hit(
        self, key: str, policy: Policy | str, cost: float = 1, *, fail: FailMode = "closed"
    ) -> Decision:
        """Consume ``cost`` units from every limit of ``policy`` on ``key``, or none."""
        if self._direct is not None:
            return self._direct.hit(key, policy, cost, fail=fail)
        return await self._decide(key, parse_policy(policy), cost, apply=True, fail=fail)

    async def peek(
        self, key: str, policy: Policy | str, cost: float = 1, *, fail: FailMode = "closed"
    ) -> Decision:
        """What :meth:`hit` would decide, consuming nothing."""
        if self._direct is not None:
            return self._direct.peek(key, policy, cost, fail=fail)
        return await self._decide(key, parse_policy(policy), cost, apply=False, fail=fail)

    async def enforce(
        self, key: str, policy: Policy | str, cost: float = 1, *, fail: FailMode = "closed"
    ) -> Decision:
        """Like :meth:`hit`, but raise :class:`RateLimited` when refused."""
        decision = await self.hit(key, policy, cost, fail=fail)
        if not decision.allowed:
            raise RateLimited("rate limit exceeded", decision.retry_after)
        return decision

    async def reset(self, key: str) -> None:
        """Forget ``key``'s usage under every policy."""
        await self._store.reset_limits([_slot(_checked(key), n) for n in range(MAX_LIMITS)])

    async def gcra(self, checks: Sequence[GcraCheck], *, apply: bool = True) -> GcraResult:
        """The raw decision over explicit checks (lockout uses it), failing closed."""
        return await self._ask(checks, apply=apply)

    async def _decide(
        self, key: str, policy: Policy, cost: float, *, apply: bool, fail: FailMode
    ) -> Decision:
        _check_cost(cost)
        checks = [
            limit.check(_slot(_checked(key), n), cost) for n, limit in enumerate(policy.limits)
        ]
        try:
            answer = await self._ask(checks, apply=apply)
        except StorageError:
            return self._failed(policy, fail)
        return self._count(decide(policy, cost, answer.allowed, answer.tats, answer.now))

    async def _ask(self, checks: Sequence[GcraCheck], *, apply: bool) -> GcraResult:
        self._refuse_while_down()
        try:
            answer = await self._store.gcra(checks, apply=apply)
        except StorageError:
            self._store_failed()
            raise
        self._down_until = 0.0
        return answer

    # shared with DirectLimiter: one account of decisions and failures

    def _refuse_while_down(self) -> None:
        if self.store_down:
            raise StorageUnavailable("the limiter's store failed a moment ago; retrying soon")

    def _store_failed(self) -> None:
        self.stats.store_errors += 1
        self._down_until = time.monotonic() + self._retry_interval

    def _failed(self, policy: Policy, fail: FailMode) -> Decision:
        """Call in an ``except StorageError``: re-raise (closed) or allow blind (open)."""
        if fail == "closed":
            self.stats.failed_closed += 1
            raise  # the StorageError being handled
        self.stats.failed_open += 1
        return _allowed_blind(policy)

    def _count(self, decision: Decision) -> Decision:
        stats = self.stats
        stats.decisions += 1
        if not decision.allowed:
            stats.refused += 1
        return decision


class DirectLimiter:
    """:class:`RateLimiter`'s synchronous path, for a store that decides without I/O
    (:class:`DirectLimitStore`: memory://). The same decisions, stats and failure handling,
    made in the caller's thread under the store's lock: the limiter's async methods use it
    (nothing to await) and so does SyncWard's twin (no hop to its event loop thread).

    It counts in the limiter's ``stats``, from whichever thread calls it: a ``+=`` on an
    attribute of that plain dataclass is one step under CPython's GIL (none of its bytecodes
    lets another thread run), so threads lose no count.
    """

    def __init__(self, limiter: RateLimiter, store: DirectLimitStore) -> None:
        self._limiter = limiter
        self._one = store.gcra_one_now
        self._many = store.gcra_keys_now

    def hit(
        self, key: str, policy: Policy | str, cost: float = 1, *, fail: FailMode = "closed"
    ) -> Decision:
        """Consume ``cost`` units from every limit of ``policy`` on ``key``, or none."""
        if not isinstance(policy, Policy):
            policy = parse_policy(policy)
        limits = policy.limits
        limiter = self._limiter
        if (
            len(limits) != 1
            or limiter._down_until
            or not 0 <= cost <= 1_000_000_000
            or key.__class__ is not str
            or not 0 < len(key) <= MAX_KEY
        ):
            return self._decide(key, policy, cost, True, fail)  # it checks, and raises
        # the commonest call, written out: one limit, valid arguments, the store up
        limit = limits[0]
        try:
            allowed, tat, now = self._one(key + "#0", limit.interval, limit.capacity, cost, True)
        except StorageError:
            return self._store_failed(policy, fail)
        decision = decide_one(policy, cost, allowed, tat, now)
        stats = limiter.stats
        stats.decisions += 1
        if not allowed:
            stats.refused += 1
        return decision

    def peek(
        self, key: str, policy: Policy | str, cost: float = 1, *, fail: FailMode = "closed"
    ) -> Decision:
        """What :meth:`hit` would decide, consuming nothing."""
        return self._decide(key, parse_policy(policy), cost, False, fail)

    def enforce(
        self, key: str, policy: Policy | str, cost: float = 1, *, fail: FailMode = "closed"
    ) -> Decision:
        """Like :meth:`hit`, but raise :class:`RateLimited` when refused."""
        decision = self.hit(key, policy, cost, fail=fail)
        if not decision.allowed:
            raise RateLimited("rate limit exceeded", decision.retry_after)
        return decision

    def _decide(
        self, key: str, policy: Policy, cost: float, apply: bool, fail: FailMode
    ) -> Decision:
        # RateLimiter._decide with _ask inlined, in the same order: cost, key, down, store
        if not 0 <= cost <= 1_000_000_000:
            _check_cost(cost)  # raises
        if key.__class__ is not str or not 0 < len(key) <= MAX_KEY:
            _checked(key)  # raises, unless a str subclass
        limiter = self._limiter
        limits = policy.limits
        if limiter._down_until:
            try:
                limiter._refuse_while_down()
            except StorageError:
                return limiter._failed(policy, fail)
        one = len(limits) == 1
        try:
            if one:
                limit = limits[0]
                answer = self._one(key + "#0", limit.interval, limit.capacity, cost, apply)
            else:
                keys = [key + suffix for suffix in _SUFFIXES[: len(limits)]]
                each = self._many(keys, policy.params, cost, apply)
        except StorageError:
            return self._store_failed(policy, fail)
        limiter._down_until = 0.0
        if one:
            return limiter._count(decide_one(policy, cost, *answer))
        return limiter._count(decide(policy, cost, *each))

    def _store_failed(self, policy: Policy, fail: FailMode) -> Decision:
        """Call in an ``except StorageError`` around the store: as RateLimiter._ask and
        _decide handle it (count it, stop asking for a while, then fail open or closed)."""
        self._limiter._store_failed()
        return self._limiter._failed(policy, fail)


def _check_cost(cost: float) -> None:
    if not 0 <= cost <= 1_000_000_000:
        raise ValueError("cost must be between 0 and 1e9")


def _checked(key: str) -> str:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY:
        raise InvalidArgument(f"a rate-limit key is 1 to {MAX_KEY} characters")
    return key


def _slot(key: str, n: int) -> str:
    return f"{key}#{n}"


_SUFFIXES = tuple(_slot("", n) for n in range(MAX_LIMITS))  # key + "#n": _slot(key, n)


def _allowed_blind(policy: Policy) -> Decision:
    limit = policy.limits[0]
    whole = tuple((each.burst, 0.0) for each in policy.limits)
    return Decision(True, limit.burst, 0.0, 0.0, limit, policy, degraded=True, per_limit=whole)
