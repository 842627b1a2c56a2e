"""The memory store's users and GCRA limits (a mixin of :class:`~.memory.MemoryStore`).

Users are never evicted: they are durable records, and a test or single-process app has few.
Limit keys share the store's LRU cap with sessions and state, so a flood of distinct keys
cannot grow the store past ``max_entries``; a key whose TAT has passed is the same as an
absent one and costs nothing until the LRU drops it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from .base import (
    GcraCheck,
    GcraResult,
    NewUserRow,
    UserChange,
    UserRow,
    gcra_candidate,
)

T = TypeVar("T")


class MemoryAccounts:
    """Users and limits, under the store's one lock (``_locked``)."""

    def _locked(self, fn: Callable[[float], T]) -> T:
        raise NotImplementedError  # MemoryStore's: one lock, one pid

    def _use(self, entry: tuple[str, ...]) -> None:
        raise NotImplementedError  # MemoryStore's LRU

    def _forget_entry(self, entry: tuple[str, ...]) -> None:
        raise NotImplementedError  # MemoryStore's LRU

    def __init__(self) -> None:
        self._users: dict[str, UserRow] = {}
        self._usernames: dict[str, str] = {}
        self._limits: dict[str, float] = {}

    # users

    async def create_user(self, new: NewUserRow) -> UserRow | None:
        def op(now: float) -> UserRow | None:
            if new.username_key in self._usernames or new.user_id in self._users:
                return None
            row = UserRow(
                new.user_id, new.username, new.username_key, new.password_hash, new.roles,
                disabled=False, created_at=now, updated_at=now,
            )  # fmt: skip
            self._users[new.user_id] = row
            self._usernames[new.username_key] = new.user_id
            return row

        return self._locked(op)

    async def get_user(self, user_id: str) -> UserRow | None:
        return self._locked(lambda now: self._users.get(user_id))

    async def find_user(self, username_key: str) -> UserRow | None:
        return self._locked(lambda now: self._users.get(self._usernames.get(username_key, "")))

    async def list_users(self, *, after: str | None, limit: int) -> list[UserRow]:
        def op(now: float) -> list[UserRow]:
            keys = sorted(k for k in self._usernames if after is None or k > after)
            return [self._users[self._usernames[k]] for k in keys[:limit]]

        return self._locked(op)

    async def update_user(self, user_id: str, change: UserChange) -> UserRow | None:
        def op(now: float) -> UserRow | None:
            row = self._users.get(user_id)
            if row is None:
                return None
            if change.expected_hash is not None and row.password_hash != change.expected_hash:
                return None
            row = apply_change(row, change, now)
            self._users[user_id] = row
            return row

        return self._locked(op)

    # limits

    async def gcra(self, checks: Sequence[GcraCheck], *, apply: bool = True) -> GcraResult:
        def op(now: float) -> GcraResult:
            decided = [gcra_candidate(c, self._limits.get(c.key), now) for c in checks]
            allowed = tuple(ok for ok, _ in decided)
            tats = tuple(tat for _, tat in decided)
            if apply and all(allowed):
                for check, tat in zip(checks, tats, strict=True):
                    self._limits[check.key] = tat
                    self._use(("l", check.key))
            return GcraResult(allowed, tats, now)

        return self._locked(op)

    async def reset_limits(self, keys: Sequence[str]) -> None:
        def op(now: float) -> None:
            for key in keys:
                self._limits.pop(key, None)
                self._forget_entry(("l", key))

        self._locked(op)

    async def sweep_limits(self, limit: int) -> int:
        def op(now: float) -> int:
            done = [key for key, tat in self._limits.items() if tat <= now][:limit]
            for key in done:
                del self._limits[key]
                self._forget_entry(("l", key))
            return len(done)

        return self._locked(op)


def apply_change(row: UserRow, change: UserChange, now: float) -> UserRow:
    """The user after ``change`` (the rule every backend applies)."""
    return replace(
        row,
        password_hash=change.password_hash or row.password_hash,
        disabled=row.disabled if change.disabled is None else change.disabled,
        roles=row.roles if change.roles is None else change.roles,
        updated_at=now,
    )
