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
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import InvalidArgument, RateLimited, StorageError, StorageUnavailable
from ..stores.base import GcraCheck, GcraResult, LimitStore
from .policy import Decision, Policy, decide, parse_policy

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


class RateLimiter:
    def __init__(self, store: LimitStore, *, retry_interval: float = 0.5) -> None:
        self._store = store
        self._retry_interval = retry_interval
        self._down_until = 0.0
        self.stats = LimiterStats()

    @property
    def store_down(self) -> bool:
        return time.monotonic() < self._down_until

    async def hit(
        self, key: str, policy: Policy | str, cost: float = 1, *, fail: FailMode = "closed"
    ) -> Decision:
        """Consume ``cost`` units from every limit of ``policy`` on ``key``, or none."""
        return await self._decide(key, parse_policy(policy), cost, apply=True, fail=fail)

    async def peek(
        self, key: str, policy: Policy | str, cost: float = 1, *, fail: FailMode = "closed"
    ) -> Decision:
        """What :meth:`hit` would decide, consuming nothing."""
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
        if not 0 <= cost <= 1_000_000_000:
            raise ValueError("cost must be between 0 and 1e9")
        checks = [
            limit.check(_slot(_checked(key), n), cost) for n, limit in enumerate(policy.limits)
        ]
        try:
            answer = await self._ask(checks, apply=apply)
        except StorageError:
            if fail == "closed":
                self.stats.failed_closed += 1
                raise
            self.stats.failed_open += 1
            return _allowed_blind(policy)
        decision = decide(policy, cost, answer.allowed, answer.tats, answer.now)
        self.stats.decisions += 1
        self.stats.refused += not decision.allowed
        return decision

    async def _ask(self, checks: Sequence[GcraCheck], *, apply: bool) -> GcraResult:
        if self.store_down:
            raise StorageUnavailable("the limiter's store failed a moment ago; retrying soon")
        try:
            answer = await self._store.gcra(checks, apply=apply)
        except StorageError:
            self.stats.store_errors += 1
            self._down_until = time.monotonic() + self._retry_interval
            raise
        self._down_until = 0.0
        return answer


def _checked(key: str) -> str:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY:
        raise InvalidArgument(f"a rate-limit key is 1 to {MAX_KEY} characters")
    return key


def _slot(key: str, n: int) -> str:
    return f"{key}#{n}"


def _allowed_blind(policy: Policy) -> Decision:
    limit = policy.limits[0]
    whole = tuple((each.burst, 0.0) for each in policy.limits)
    return Decision(True, limit.burst, 0.0, 0.0, limit, policy, degraded=True, per_limit=whole)
