"""The SQLite store's users and GCRA limits (a mixin of :class:`~.sqlite.SqliteStore`).

Each operation is one job on the store's threads: reads on a reader, writes as one
``BEGIN IMMEDIATE`` transaction on the writer, so a GCRA decision over several keys, and a
registration's uniqueness check, are atomic against every thread and process.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..rules.limits import gcra_candidate
from ..rules.users import apply_change
from .records import GcraCheck, GcraResult, NewUserRow, UserChange, UserRow
from .sqlite_parts import Conn, SqlitePart

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


class SqliteAccounts(SqlitePart):
    """Users and limits over the store's reader and writer threads."""

    # users

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

    # limits

    async def gcra(self, checks: Sequence[GcraCheck], *, apply: bool = True) -> GcraResult:
        def decide(conn: Conn) -> GcraResult:
            now = self._now()
            keys = [c.key for c in checks]
            found = conn.execute(
                f"SELECT key, tat FROM sw_limits WHERE key IN ({', '.join('?' * len(keys))})",
                keys,
            ).fetchall()
            tats = dict(found)
            decided = [gcra_candidate(c, tats.get(c.key), now) for c in checks]
            allowed = tuple(ok for ok, _ in decided)
            candidates = tuple(tat for _, tat in decided)
            if apply and all(allowed):
                conn.executemany(
                    "INSERT INTO sw_limits (key, tat) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET tat = excluded.tat",
                    list(zip(keys, candidates, strict=True)),
                )
            return GcraResult(allowed, candidates, now)

        # A peek only reads; a decision that may store runs on the writer, in one transaction.
        return await (self._write(decide) if apply else self._read(decide))

    async def reset_limits(self, keys: Sequence[str]) -> None:
        def job(conn: Conn) -> None:
            conn.executemany("DELETE FROM sw_limits WHERE key = ?", [(k,) for k in keys])

        await self._write(job)

    async def sweep_limits(self, limit: int) -> int:
        def job(conn: Conn) -> int:
            cursor = conn.execute(
                "DELETE FROM sw_limits WHERE key IN "
                "(SELECT key FROM sw_limits WHERE tat <= ? LIMIT ?)",
                (self._now(), limit),
            )
            return cursor.rowcount

        return await self._write(job)
