"""The PostgreSQL store's users (a layer of :class:`~.store.PostgresStore`).

Users: one statement each. ``username_key`` is UNIQUE, so a registration is decided by
``INSERT … ON CONFLICT DO NOTHING RETURNING``; a conditional change is one ``UPDATE …
RETURNING`` that names the expected password hash. Writes that must not be repeated after a
lost connection (a registration, a compare-and-set change) run in a transaction, so a
connection found dead before COMMIT is still retried.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from psycopg.rows import TupleRow

from ..records import NewUserRow, UserChange, UserRow
from .connection import Conn, PostgresCore, fetch_one


class PostgresUsers(PostgresCore):
    async def create_user(self, new: NewUserRow) -> UserRow | None:
        params = {
            "user_id": new.user_id,
            "username": new.username,
            "username_key": new.username_key,
            "password_hash": new.password_hash,
            "roles": _roles(new.roles),
            "now": self._now(),
        }

        async def work(conn: Conn) -> UserRow | None:
            return _user(await fetch_one(conn, self._sql.create_user, params))

        # Not repeatable after a lost COMMIT: the repeat would find its own row and say "taken".
        return await self._transaction(work, idempotent=False)

    async def get_user(self, user_id: str) -> UserRow | None:
        return _user(await self._one(self._sql.get_user, {"user_id": user_id}))

    async def find_user(self, username_key: str) -> UserRow | None:
        return _user(await self._one(self._sql.find_user, {"username_key": username_key}))

    async def list_users(self, *, after: str | None, limit: int) -> list[UserRow]:
        if limit <= 0:
            return []
        rows = await self._all(self._sql.list_users, {"after": after, "limit": limit})
        return [_user_row(r) for r in rows]

    async def update_user(self, user_id: str, change: UserChange) -> UserRow | None:
        params = {
            "user_id": user_id,
            # apply_change keeps the hash for any falsy password_hash, "" included
            "password_hash": change.password_hash or None,
            "expected_hash": change.expected_hash,
            "disabled": change.disabled,
            "roles": None if change.roles is None else _roles(change.roles),
            "now": self._now(),
        }
        if change.expected_hash is None:
            # Setting fields to given values: repeating it after a lost COMMIT is harmless.
            return _user(await self._one(self._sql.update_user, params))

        async def work(conn: Conn) -> UserRow | None:
            return _user(await fetch_one(conn, self._sql.update_user, params))

        # A compare-and-set: a repeat after a lost COMMIT would see its own hash and refuse.
        return await self._transaction(work, idempotent=False)


def _roles(roles: Sequence[str]) -> str:
    return json.dumps(list(roles))


def _parse_roles(text: str) -> tuple[str, ...]:
    return tuple(str(role) for role in json.loads(text))


def _user_row(row: TupleRow) -> UserRow:
    user_id, username, username_key, password_hash, roles, disabled, created, updated = row
    return UserRow(
        user_id, username, username_key, password_hash, _parse_roles(roles),
        disabled, created, updated,
    )  # fmt: skip


def _user(row: TupleRow | None) -> UserRow | None:
    return None if row is None else _user_row(row)
