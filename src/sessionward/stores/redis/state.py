"""The Redis store's state documents (a base of :class:`~.store.RedisStore`).

A document lives in its scope's hash (``d:<name>`` the data, ``v:<name>`` the version; layout
in :mod:`.keys`); a session's expire with the session. The compare-and-set in
``lua/state_put.lua`` and ``lua/state_delete.lua`` restates ``rules.state.version_matches``.
"""

from __future__ import annotations

from ..records import StateRow, StateScope, StateWrite
from .connection import RedisConnection
from .keys import state_write, version_arg


class RedisState(RedisConnection):
    async def get_state(self, scope: StateScope, name: str) -> StateRow | None:
        args = [self._now(), scope.user_id, name]
        reply = await self._script("state_get", self._keys.documents(scope), args)
        if reply is None or reply[0] is None:
            return None
        return StateRow(reply[0], int(reply[1]))

    async def put_state(
        self, scope: StateScope, name: str, data: str, *, expected_version: int | None
    ) -> StateWrite:
        args = [self._now(), scope.user_id, name, data, version_arg(expected_version)]
        keys = self._keys.documents(scope)
        reply = await self._script("state_put", keys, args, idempotent=False)
        return state_write(reply)

    async def delete_state(
        self, scope: StateScope, name: str, *, expected_version: int | None
    ) -> StateWrite:
        args = [self._now(), scope.user_id, name, version_arg(expected_version)]
        keys = self._keys.documents(scope)
        # an unconditional delete may be repeated; a compare-and-delete may not
        reply = await self._script("state_delete", keys, args, idempotent=expected_version is None)
        return state_write(reply)

    async def list_state(self, scope: StateScope) -> list[str]:
        args = [self._now(), scope.user_id]
        return sorted(await self._script("state_list", self._keys.documents(scope), args))
