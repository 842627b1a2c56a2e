"""The SQLite store's sessions (a mixin of :class:`~.store.SqliteStore`).

A validate is a plain read; only when the touch interval has passed does it send a
conditional ``UPDATE`` (guarded by the ``last_seen_at`` it read) to the writer. Dropping a
session takes its spent tokens, its state and its budgets with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ...errors import ConfigurationError
from ...rules.sessions import refresh_of_spent, stamp_new_session, touch_due
from ..records import (
    ById,
    ByToken,
    Created,
    Lookup,
    NewSessionRow,
    Refreshed,
    SessionKey,
    SessionRow,
    StateScope,
)
from .parts import Conn, SqlitePart

_COLUMNS = (
    "session_id, user_id, token_hash, created_at, last_seen_at, idle_timeout, "
    "idle_expires_at, expires_at, revoked_at, ip, user_agent, metadata, generation, "
    "prev_token_hash, rotated_at"
)
_SELECT = f"SELECT {_COLUMNS} FROM sw_sessions"
_LIVE = "revoked_at IS NULL AND idle_expires_at > ?"


def _row(values: Sequence[Any] | None) -> SessionRow | None:
    return None if values is None else SessionRow(*values)


def _key_sql(key: SessionKey) -> tuple[str, tuple[str, ...]]:
    if isinstance(key, ByToken):
        return "token_hash = ?", (key.token_hash,)
    return "session_id = ? AND user_id = ?", (key.session_id, key.user_id)


class SqliteSessions(SqlitePart):
    """Sessions over the store's reader and writer threads."""

    async def create_session(
        self, new: NewSessionRow, *, max_sessions: int, evict_oldest: bool
    ) -> Created:
        def job(conn: Conn) -> Created:
            existing = _row(conn.execute(f"{_SELECT} WHERE session_id = ?",
                                         (new.session_id,)).fetchone())  # fmt: skip
            if existing is not None:
                if existing.token_hash != new.token_hash:
                    raise ConfigurationError("session id collision")
                return Created(existing, ())
            now = self._now()
            live = _live_sessions(conn, new.user_id, now)
            excess = len(live) - max_sessions + 1
            if excess > 0 and not evict_oldest:
                return Created(None, ())
            evicted = [row.session_id for row in live[: max(excess, 0)]]
            _revoke(conn, new.user_id, evicted, now)
            row = stamp_new_session(new, now)
            conn.execute(f"INSERT INTO sw_sessions ({_COLUMNS}) VALUES ({_marks(15)})",
                         _values(row))  # fmt: skip
            return Created(row, tuple(evicted))

        return await self._write(job)

    async def find_session(self, key: SessionKey, *, touch_interval: float | None) -> Lookup:
        where, params = _key_sql(key)

        def read(conn: Conn) -> Lookup:
            return Lookup(_row(conn.execute(f"{_SELECT} WHERE {where}", params).fetchone()),
                          self._now())  # fmt: skip

        found = await self._read(read)
        if found.row is None or not touch_due(found.row, found.now, touch_interval):
            return found
        seen = found.row

        def touch(conn: Conn) -> Lookup:
            now = self._now()
            conn.execute(
                "UPDATE sw_sessions SET last_seen_at = ?, "
                "idle_expires_at = min(? + idle_timeout, expires_at) "
                f"WHERE session_id = ? AND last_seen_at = ? AND {_LIVE}",
                (now, now, seen.session_id, seen.last_seen_at, now),
            )
            return Lookup(_row(conn.execute(f"{_SELECT} WHERE {where}", params).fetchone()), now)

        return await self._write(touch)

    async def rotate_session(self, key: SessionKey, new_token_hash: str) -> Lookup:
        where, params = _key_sql(key)

        def job(conn: Conn) -> Lookup:
            now = self._now()
            row = _row(conn.execute(f"{_SELECT} WHERE {where}", params).fetchone())
            if row is None or not row.is_live(now):
                return Lookup(row, now)
            return Lookup(_rotate(conn, row, new_token_hash, now), now)

        return await self._write(job)

    async def refresh_session(
        self, token_hash: str, new_token_hash: str, *, grace: float
    ) -> Refreshed:
        def job(conn: Conn) -> Refreshed:
            now = self._now()
            row = _row(conn.execute(f"{_SELECT} WHERE token_hash = ?", (token_hash,)).fetchone())
            if row is not None:
                if not row.is_live(now):
                    return Refreshed("dead", row, now)
                return Refreshed("rotated", _rotate(conn, row, new_token_hash, now), now)
            row = _row(conn.execute(
                f"{_SELECT} WHERE session_id = "
                "(SELECT session_id FROM sw_spent_tokens WHERE token_hash = ?)", (token_hash,),
            ).fetchone())  # fmt: skip
            if row is None:
                return Refreshed("unknown", None, now)
            outcome = refresh_of_spent(row, token_hash, new_token_hash, grace, now)
            if outcome == "reused" and _revoke(conn, row.user_id, [row.session_id], now):
                row = replace(row, revoked_at=now)
            return Refreshed(outcome, row, now)

        return await self._write(job)

    async def revoke_session(self, key: ById) -> bool:
        def job(conn: Conn) -> bool:
            return _revoke(conn, key.user_id, [key.session_id], self._now()) == 1

        return await self._write(job)

    async def revoke_user_sessions(self, user_id: str, *, keep: str | None = None) -> int:
        def job(conn: Conn) -> int:
            now = self._now()
            ids = [r.session_id for r in _live_sessions(conn, user_id, now)]
            return _revoke(conn, user_id, [i for i in ids if i != keep], now)

        return await self._write(job)

    async def find_session_owner(self, session_id: str) -> str | None:
        def job(conn: Conn) -> str | None:
            # session_id is the primary key: an administrator's lookup by id alone
            row = conn.execute("SELECT user_id FROM sw_sessions WHERE session_id = ?",
                               (session_id,)).fetchone()  # fmt: skip
            return None if row is None else str(row[0])

        return await self._read(job)

    async def list_sessions(self, user_id: str) -> tuple[list[SessionRow], float]:
        def job(conn: Conn) -> tuple[list[SessionRow], float]:
            now = self._now()
            return _live_sessions(conn, user_id, now), now

        return await self._read(job)

    async def sweep_sessions(self, limit: int) -> int:
        def job(conn: Conn) -> int:
            dead = conn.execute(
                "SELECT session_id, user_id FROM sw_sessions WHERE idle_expires_at <= ? "
                "LIMIT ?", (self._now(), limit),
            ).fetchall()  # fmt: skip
            for session_id, user_id in dead:
                conn.execute("DELETE FROM sw_sessions WHERE session_id = ?", (session_id,))
                conn.execute("DELETE FROM sw_spent_tokens WHERE session_id = ?", (session_id,))
                _drop_session_state(conn, user_id, session_id)
                for table in ("sw_budgets", "sw_ledger", "sw_holds"):
                    conn.execute(f"DELETE FROM {table} WHERE user_id = ? AND session_id = ?",
                                 (user_id, session_id))  # fmt: skip
            return len(dead)

        return await self._write(job)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _values(row: SessionRow) -> tuple[Any, ...]:
    return (
        row.session_id, row.user_id, row.token_hash, row.created_at, row.last_seen_at,
        row.idle_timeout, row.idle_expires_at, row.expires_at, row.revoked_at, row.ip,
        row.user_agent, row.metadata, row.generation, row.prev_token_hash, row.rotated_at,
    )  # fmt: skip


def _live_sessions(conn: Conn, user_id: str, now: float) -> list[SessionRow]:
    rows = conn.execute(
        f"{_SELECT} WHERE user_id = ? AND {_LIVE} ORDER BY created_at, rowid",
        (user_id, now),
    ).fetchall()
    return [SessionRow(*values) for values in rows]


def _rotate(conn: Conn, row: SessionRow, new_token_hash: str, now: float) -> SessionRow:
    conn.execute(
        "UPDATE sw_sessions SET token_hash = ?, generation = generation + 1, "
        "prev_token_hash = token_hash, rotated_at = ?, last_seen_at = ?, "
        "idle_expires_at = min(? + idle_timeout, expires_at) WHERE session_id = ?",
        (new_token_hash, now, now, now, row.session_id),
    )
    conn.execute("INSERT INTO sw_spent_tokens (token_hash, session_id) VALUES (?, ?)",
                 (row.token_hash, row.session_id))  # fmt: skip
    rotated = _row(conn.execute(f"{_SELECT} WHERE session_id = ?", (row.session_id,)).fetchone())
    assert rotated is not None
    return rotated


def _revoke(conn: Conn, user_id: str, session_ids: list[str], now: float) -> int:
    revoked = 0
    for session_id in session_ids:
        cursor = conn.execute(
            f"UPDATE sw_sessions SET revoked_at = ? WHERE session_id = ? AND user_id = ? "
            f"AND {_LIVE}", (now, session_id, user_id, now),
        )  # fmt: skip
        if cursor.rowcount:
            _drop_session_state(conn, user_id, session_id)
            revoked += 1
    return revoked


def _drop_session_state(conn: Conn, user_id: str, session_id: str) -> None:
    conn.execute(
        "DELETE FROM sw_state WHERE kind = 'session' AND user_id = ? AND owner_id = ?",
        (user_id, session_id),
    )


def owner_live(conn: Conn, scope: StateScope, now: float) -> bool:
    """Whether a state or budget scope's owner exists: a user always, a session while live."""
    if scope.kind == "user":
        return True
    found = conn.execute(
        f"SELECT 1 FROM sw_sessions WHERE session_id = ? AND user_id = ? AND {_LIVE}",
        (scope.session_id, scope.user_id, now),
    ).fetchone()
    return found is not None
