"""The SQLite store's state documents (a mixin of :class:`~.store.SqliteStore`).

A session's documents are readable and writable only while the session is live, and go
when it is revoked or swept.
"""

from __future__ import annotations

from ...rules.state import version_matches
from ..records import StateRow, StateScope, StateWrite
from .parts import Conn, SqlitePart
from .sessions import owner_live

_STATE_KEY = "kind = ? AND user_id = ? AND owner_id = ? AND name = ?"


def _scope_params(scope: StateScope) -> tuple[str, str, str]:
    return (scope.kind, scope.user_id, scope.session_id or "")


class SqliteState(SqlitePart):
    """State documents over the store's reader and writer threads."""

    async def get_state(self, scope: StateScope, name: str) -> StateRow | None:
        def job(conn: Conn) -> StateRow | None:
            if not owner_live(conn, scope, self._now()):
                return None
            found = conn.execute(f"SELECT data, version FROM sw_state WHERE {_STATE_KEY}",
                                 (*_scope_params(scope), name)).fetchone()  # fmt: skip
            return None if found is None else StateRow(found[0], found[1])

        return await self._read(job)

    async def put_state(
        self, scope: StateScope, name: str, data: str, *, expected_version: int | None
    ) -> StateWrite:
        def job(conn: Conn) -> StateWrite:
            current = _state_version(conn, scope, name)
            if not owner_live(conn, scope, self._now()):
                return StateWrite(False, current, owner_live=False)
            if not version_matches(current, expected_version):
                return StateWrite(False, current)
            version = (current or 0) + 1
            conn.execute(
                "INSERT INTO sw_state (kind, user_id, owner_id, name, data, version) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, user_id, owner_id, name) "
                "DO UPDATE SET data = excluded.data, version = excluded.version",
                (*_scope_params(scope), name, data, version),
            )
            return StateWrite(True, version)

        return await self._write(job)

    async def delete_state(
        self, scope: StateScope, name: str, *, expected_version: int | None
    ) -> StateWrite:
        def job(conn: Conn) -> StateWrite:
            current = _state_version(conn, scope, name)
            if not owner_live(conn, scope, self._now()):
                return StateWrite(False, current, owner_live=False)
            if current is None or not version_matches(current, expected_version):
                return StateWrite(False, current)
            conn.execute(f"DELETE FROM sw_state WHERE {_STATE_KEY}", (*_scope_params(scope), name))
            return StateWrite(True, None)

        return await self._write(job)

    async def list_state(self, scope: StateScope) -> list[str]:
        def job(conn: Conn) -> list[str]:
            if not owner_live(conn, scope, self._now()):
                return []
            rows = conn.execute(
                "SELECT name FROM sw_state WHERE kind = ? AND user_id = ? AND owner_id = ? "
                "ORDER BY name", _scope_params(scope),
            ).fetchall()  # fmt: skip
            return [name for (name,) in rows]

        return await self._read(job)


def _state_version(conn: Conn, scope: StateScope, name: str) -> int | None:
    found = conn.execute(f"SELECT version FROM sw_state WHERE {_STATE_KEY}",
                         (*_scope_params(scope), name)).fetchone()  # fmt: skip
    return None if found is None else int(found[0])
