"""The memory store's users (a mixin of :class:`~.store.MemoryStore`), under its lock.

Users are never evicted: they are durable records, and a test or single-process app has few.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ...rules.users import apply_change
from ..records import NewUserRow, UserChange, UserRow

T = TypeVar("T")


class MemoryUsers:
    """Users, under the store's one lock (``_locked``)."""

    def _locked(self, fn: Callable[[float], T]) -> T:
        raise NotImplementedError  # MemoryStore's: one lock, one process

    def __init__(self) -> None:
        self._users: dict[str, UserRow] = {}
        self._usernames: dict[str, str] = {}

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
