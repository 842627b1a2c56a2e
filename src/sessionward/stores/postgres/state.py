"""The PostgreSQL store's state documents (a layer of :class:`~.store.PostgresStore`).

A write is one transaction: the owning session's row ``FOR SHARE`` (so a concurrent revoke
waits for it), then the document's row ``FOR UPDATE``, then the compare-and-set decided by
``rules.state.version_matches``.
"""

from __future__ import annotations

from ...rules.state import version_matches
from ..records import StateRow, StateScope, StateWrite
from .connection import Conn, PostgresCore, fetch_one
from .statements import Params, state_params


class PostgresState(PostgresCore):
    async def get_state(self, scope: StateScope, name: str) -> StateRow | None:
        params = {**state_params(scope, name), "now": self._now()}
        row = await self._one(self._sql.get_state, params)
        return None if row is None else StateRow(row[0], row[1])

    async def put_state(
        self, scope: StateScope, name: str, data: str, *, expected_version: int | None
    ) -> StateWrite:
        params = {**state_params(scope, name), "data": data, "now": self._now()}

        async def work(conn: Conn) -> StateWrite:
            return await self._write_state(conn, scope, params, expected_version)

        return await self._transaction(work, idempotent=False)

    async def _write_state(
        self, conn: Conn, scope: StateScope, params: Params, expected: int | None
    ) -> StateWrite:
        live = await self._owner_live(conn, scope, params)
        current = await self._locked_version(conn, params)
        if live and current is None and expected in (None, 0):
            if await fetch_one(conn, self._sql.create_state, params) is not None:
                return StateWrite(True, 1)
            current = await self._locked_version(conn, params)  # a rival's, locked by us now
        if not live:
            return StateWrite(False, current, owner_live=False)
        if not version_matches(current, expected):
            return StateWrite(False, current)
        row = await fetch_one(conn, self._sql.update_state, params)
        assert row is not None  # the row is locked by this transaction
        return StateWrite(True, int(row[0]))

    async def _owner_live(self, conn: Conn, scope: StateScope, params: Params) -> bool:
        if scope.kind == "user":
            return True
        row = await fetch_one(conn, self._sql.owner_live, params)
        return row is not None and bool(row[0])

    async def _locked_version(self, conn: Conn, params: Params) -> int | None:
        row = await fetch_one(conn, self._sql.lock_state, params)
        return None if row is None else int(row[0])

    async def delete_state(
        self, scope: StateScope, name: str, *, expected_version: int | None
    ) -> StateWrite:
        params = {**state_params(scope, name), "now": self._now()}

        async def work(conn: Conn) -> StateWrite:
            live = await self._owner_live(conn, scope, params)
            current = await self._locked_version(conn, params)
            if not live:
                return StateWrite(False, current, owner_live=False)
            if current is None or not version_matches(current, expected_version):
                return StateWrite(False, current)
            await conn.execute(self._sql.delete_state, params)
            return StateWrite(True, None)

        return await self._transaction(work, idempotent=expected_version is None)

    async def list_state(self, scope: StateScope) -> list[str]:
        params = {**state_params(scope, ""), "now": self._now()}
        rows = await self._all(self._sql.state_names, params)
        return [str(r[0]) for r in rows]
