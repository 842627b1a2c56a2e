"""Brute-force protection for logins, on the store's GCRA limiter.

Every attempt is counted *before* the password is checked, in one atomic decision over
several keys, and given back if the password was right. So however many wrong guesses race
in, from however many processes, at most ``login_max_failures`` reach the password check
per window; the next attempt finds the account locked.

It runs on the same limiter as every rate limit (:class:`~sessionward.limits.RateLimiter`,
failing closed), with explicit checks. Keys (all GCRA; see
:class:`~sessionward.stores.records.GcraCheck`), per account (the
username's digest, whether or not the account exists, so a lock reveals nothing) and per
client IP:

- ``acct``: ``login_max_failures`` per ``login_failure_window``;
- ``acct-hour``: never more than 100 failures in any hour whatever the settings (ASVS
  2.2.1): a GCRA admits its burst plus its refill in any window, so a burst of 50
  refilling at 50 an hour keeps every hour at or under 100;
- ``lock``: capacity 0, so it refuses while its TAT is ahead of now: a lock *is* a TAT;
- ``locks``: one unit per lock, draining one a day: how many recent locks, for doubling;
- ``ip``: ``login_ip_max_failures`` per ``login_failure_window``.

When an attempt is refused by the account's counters, the lock is set for
``login_lockout``, doubled per recent lock, capped at ``login_lockout_max``. Setting it is
itself a GCRA decision that only succeeds while the account is unlocked, so concurrent
refusals lock once and escalate once.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import dataclass

from ..config import Settings
from ..errors import AccountLocked
from ..limits import Limit, RateLimiter
from ..stores.records import GcraCheck

HOURLY_CAP = 100
_HOURLY = HOURLY_CAP // 2  # burst and hourly refill: together at most HOURLY_CAP an hour
LOCK_DECAY = 86400.0  # one level of escalation is forgotten per day
UNKNOWN_IP = "unknown"  # the one key of attempts that come with no usable address
_FOREVER = 1e12


@dataclass(frozen=True, slots=True)
class Attempt:
    """A counted login attempt; hand it back to :meth:`Lockout.succeeded` on success."""

    account: str
    ip: str


class Lockout:
    def __init__(self, limiter: RateLimiter, settings: Settings) -> None:
        self._store = limiter
        self._s = settings

    async def begin(self, username_key: str, ip: str | None) -> Attempt:
        """Count one attempt, or raise :class:`AccountLocked` (no password check then)."""
        attempt = Attempt(_digest(username_key), _normalized(ip))
        checks = self._checks(attempt)
        decided = await self._store.gcra(checks)
        if all(decided.allowed):
            return attempt
        if not decided.allowed[0]:  # already locked
            raise AccountLocked("account locked", decided.tats[0] - decided.now)
        if not all(decided.allowed[1:3]):
            raise AccountLocked("account locked", await self._lock(attempt.account))
        ip_check = checks[-1]
        raise AccountLocked("too many failed logins", decided.tats[-1] - ip_check.capacity
                            - decided.now)  # fmt: skip

    async def succeeded(self, attempt: Attempt) -> None:
        """The password was right: give the attempt back and clear the account's count."""
        refunds = [
            counter(f"login:acct-hour:{attempt.account}", _HOURLY, 3600.0, -1),
            self._ip_check(attempt.ip, -1),
        ]
        await self._store.gcra(refunds)
        await self._store.gcra([counter(f"login:acct:{attempt.account}", 1, 1.0, -1e12)])

    def _checks(self, attempt: Attempt) -> list[GcraCheck]:
        window, n = self._s.login_failure_window, self._s.login_max_failures
        account = attempt.account
        return [
            GcraCheck(f"login:lock:{account}", 1.0, 0.0, 0),
            counter(f"login:acct:{account}", n, window, 1),
            counter(f"login:acct-hour:{account}", _HOURLY, 3600.0, 1),
            self._ip_check(attempt.ip, 1),
        ]

    def _ip_check(self, ip: str, cost: float) -> GcraCheck:
        window, n = self._s.login_failure_window, self._s.login_ip_max_failures
        return counter(f"login:ip:{ip}", n, window, cost)

    async def _lock(self, account: str) -> float:
        """Lock the account (once, however many callers race here); return its remaining
        seconds."""
        base = self._s.login_lockout
        lock, history = f"login:lock:{account}", f"login:locks:{account}"
        first = await self._store.gcra([
            GcraCheck(lock, 1.0, base, base),
            GcraCheck(history, LOCK_DECAY, _FOREVER, 1),
        ])  # fmt: skip
        if not first.allowed[0]:  # another attempt locked it a moment ago
            return first.tats[0] - base - first.now
        level = max(math.ceil((first.tats[1] - first.now) / LOCK_DECAY - 1e-9), 1)
        duration = min(base * 2 ** (level - 1), self._s.login_lockout_max)
        if duration > base:
            await self._store.gcra([GcraCheck(lock, 1.0, _FOREVER, duration - base)])
        return float(duration)


def counter(key: str, n: int, window: float, cost: float) -> GcraCheck:
    """``n`` per ``window``, all at once if need be: a rate limit's check."""
    return Limit(n, window, n).check(key, cost)


def _digest(username_key: str) -> str:
    return hashlib.sha256(username_key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _normalized(ip: str | None) -> str:
    """The address's key; attempts with no usable address (no peer, as behind a Unix socket,
    or one that does not parse) share one key rather than going uncounted."""
    try:
        return ipaddress.ip_address(ip or "").compressed
    except ValueError:
        return UNKNOWN_IP
