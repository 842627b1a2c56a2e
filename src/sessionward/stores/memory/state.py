"""The memory store's state documents (a mixin of :class:`~.store.MemoryStore`), under its lock.

A document is an LRU entry, ``(kind, user id, session id, name)``; a session's documents go
when the session is revoked or dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from ...rules.state import version_matches
from ..records import StateRow, StateScope, StateWrite

T = TypeVar("T")
#: a state scope as a key: (kind, user id, session id or "")
ScopeKey = tuple[str, str, str]


def scope_key(scope: StateScope) -> ScopeKey:
    return (scope.kind, scope.user_id, scope.session_id or "")


class MemoryState:
    """State documents by scope, under the store's one lock (``_locked``)."""

    _lru: OrderedDict[str | tuple[str, ...], None]  # MemoryStore's

    def _locked(self, fn: Callable[[float], T]) -> T:
        raise NotImplementedError  # MemoryStore's: one lock, one process

    def _use(self, entry: tuple[str, ...] | str) -> None:
        raise NotImplementedError  # MemoryStore's LRU: mark used, drop the oldest past the cap

    def _owner_live(self, scope: StateScope, now: float) -> bool:
        raise NotImplementedError  # MemoryStore's: a user, or a live session of that user

    def __init__(self) -> None:
        self._state: dict[ScopeKey, dict[str, StateRow]] = {}

    async def get_state(self, scope: StateScope, name: str) -> StateRow | None:
        def op(now: float) -> StateRow | None:
            key = scope_key(scope)
            if not self._owner_live(scope, now):
                return None
            found = self._state.get(key, {}).get(name)
            if found is not None:
                self._use((*key, name))
            return found

        return self._locked(op)

    async def put_state(
        self, scope: StateScope, name: str, data: str, *, expected_version: int | None
    ) -> StateWrite:
        def op(now: float) -> StateWrite:
            key = scope_key(scope)
            current = self._state.get(key, {}).get(name)
            version = current.version if current else None
            if not self._owner_live(scope, now):
                return StateWrite(False, version, owner_live=False)
            if not version_matches(version, expected_version):
                return StateWrite(False, version)
            new_version = (version or 0) + 1
            self._state.setdefault(key, {})[name] = StateRow(data, new_version)
            self._use((*key, name))
            return StateWrite(True, new_version)

        return self._locked(op)

    async def delete_state(
        self, scope: StateScope, name: str, *, expected_version: int | None
    ) -> StateWrite:
        def op(now: float) -> StateWrite:
            key = scope_key(scope)
            docs = self._state.get(key, {})
            current = docs.get(name)
            if not self._owner_live(scope, now):
                return StateWrite(False, current.version if current else None, owner_live=False)
            if current is None or not version_matches(current.version, expected_version):
                return StateWrite(False, current.version if current else None)
            del docs[name]
            self._lru.pop((*key, name), None)
            if not docs:
                del self._state[key]
            return StateWrite(True, None)

        return self._locked(op)

    async def list_state(self, scope: StateScope) -> list[str]:
        def op(now: float) -> list[str]:
            if not self._owner_live(scope, now):
                return []
            return sorted(self._state.get(scope_key(scope), {}))

        return self._locked(op)
