"""The SQLite store's users (a mixin of :class:`~.store.SqliteStore`).

Each operation is one job on the store's threads: reads on a reader, writes as one
``BEGIN IMMEDIATE`` transaction on the writer, so a registration's uniqueness check is
atomic against every thread and process.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...rules.users import apply_change
from ..records import NewUserRow, UserChange, UserRow
from .parts import Conn, SqlitePart

_USER = (
    "SELECT user_id, username, username_key, password_hash, roles, disabled, created_at, "
    "updated_at FROM sw_users"
)


def _user(values: Sequence[Any] | None) -> UserRow | None:
    if values is None:
        return None
    uid, name, key, password_hash, roles, disabled, created, updated = values
    return UserRow(uid, name, key, password_hash, tuple(json.loads(roles)), bool(disabled),
                   created, updated)  # fmt: skip


class SqliteUsers(SqlitePart):
    """Users over the store's reader and writer threads."""

    async def create_user(self, new: NewUserRow) -> UserRow | None:
        def job(conn: Conn) -> UserRow | None:
            now = self._now()
            cursor = conn.execute(
                "INSERT INTO sw_users (user_id, username, username_key, password_hash, roles, "
                "disabled, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (new.user_id, new.username, new.username_key, new.password_hash,
                 json.dumps(list(new.roles)), now, now),
            )  # fmt: skip
            if not cursor.rowcount:
                return None
            return _user(conn.execute(f"{_USER} WHERE user_id = ?", (new.user_id,)).fetchone())

        return await self._write(job)

    async def get_user(self, user_id: str) -> UserRow | None:
        return await self._read(
            lambda conn: _user(conn.execute(f"{_USER} WHERE user_id = ?", (user_id,)).fetchone())
        )

    async def find_user(self, username_key: str) -> UserRow | None:
        sql = f"{_USER} WHERE username_key = ?"
        return await self._read(lambda conn: _user(conn.execute(sql, (username_key,)).fetchone()))

    async def list_users(self, *, after: str | None, limit: int) -> list[UserRow]:
        def job(conn: Conn) -> list[UserRow]:
            rows = conn.execute(
                f"{_USER} WHERE username_key > ? ORDER BY username_key LIMIT ?",
                (after if after is not None else "", limit),
            ).fetchall()
            return [u for u in map(_user, rows) if u is not None]

        return await self._read(job)

    async def update_user(self, user_id: str, change: UserChange) -> UserRow | None:
        def job(conn: Conn) -> UserRow | None:
            row = _user(conn.execute(f"{_USER} WHERE user_id = ?", (user_id,)).fetchone())
            if row is None or (change.expected_hash not in (None, row.password_hash)):
                return None
            row = apply_change(row, change, self._now())
            conn.execute(
                "UPDATE sw_users SET password_hash = ?, disabled = ?, roles = ?, updated_at = ? "
                "WHERE user_id = ?",
                (row.password_hash, int(row.disabled), json.dumps(list(row.roles)),
                 row.updated_at, user_id),
            )  # fmt: skip
            return row

        return await self._write(job)
