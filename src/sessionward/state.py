"""Isolated state: named JSON documents scoped to a user or to one session, with versions.

A scope comes from a validated :class:`~sessionward.sessions.Session` (``session.scope()``
for the user's documents, ``session.scope("session")`` for the session's own), so the owner
is always part of the key and never taken from a caller's input.

    doc = await ward.state.get(scope, "cart")                 # None, or data + version
    version = await ward.state.put(scope, "cart", {"items": [1]},
                                   expected_version=doc.version if doc else 0)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

from .config import Settings
from .errors import (
    InvalidArgument,
    InvalidStateData,
    InvalidStateName,
    StateTooLarge,
    WriteConflict,
)
from .sessions import judge
from .stores.protocols import SessionStore, StateStore
from .stores.records import ById, StateScope, StateWrite
from .validation import encode_json

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")


@dataclass(frozen=True, slots=True)
class StateDocument:
    name: str
    data: Any
    version: int


class StateStoreWithSessions(StateStore, SessionStore, Protocol):
    """What the state manager needs: documents, and sessions to explain a refused write."""


class StateManager:
    """Reads and compare-and-set writes of state documents."""

    def __init__(self, store: StateStoreWithSessions, settings: Settings) -> None:
        self._store = store
        self._settings = settings

    async def get(self, scope: StateScope, name: str) -> StateDocument | None:
        row = await self._store.get_state(scope, check_name(name))
        return None if row is None else StateDocument(name, json.loads(row.data), row.version)

    async def put(
        self, scope: StateScope, name: str, data: Any, *, expected_version: int | None = None
    ) -> int:
        """Write ``data`` and return the new version. ``expected_version``: ``None``
        overwrites, ``0`` creates only, ``n`` writes only over version ``n`` and raises
        :class:`WriteConflict` otherwise."""
        text = encode_json(data, "state data", error=InvalidStateData)
        size = len(text.encode())
        if size > self._settings.state_max_bytes:
            raise StateTooLarge(size, self._settings.state_max_bytes)
        written = await self._store.put_state(
            scope, check_name(name), text, expected_version=_check_version(expected_version)
        )
        await self._raise_unless_applied(scope, written, expected_version)
        assert written.version is not None
        return written.version

    async def delete(
        self, scope: StateScope, name: str, *, expected_version: int | None = None
    ) -> bool:
        """Delete a document; ``False`` if it did not exist. A stale ``expected_version``
        raises :class:`WriteConflict`."""
        written = await self._store.delete_state(
            scope, check_name(name), expected_version=_check_version(expected_version)
        )
        if written.applied:
            return True
        if not written.owner_live:
            await self._raise_unless_applied(scope, written, expected_version)
        if written.version is None and expected_version is None:
            return False
        raise WriteConflict(expected_version, written.version)

    async def names(self, scope: StateScope) -> list[str]:
        return await self._store.list_state(scope)

    async def _raise_unless_applied(
        self, scope: StateScope, written: StateWrite, expected: int | None
    ) -> None:
        if written.applied:
            return
        if not written.owner_live:
            assert scope.session_id is not None
            found = await self._store.find_session(
                ById(scope.user_id, scope.session_id), touch_interval=None
            )
            judge(found.row, found.now)
            judge(None, found.now)  # live again by now, yet the write was refused
        raise WriteConflict(expected, written.version)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidStateName(
            "a state name is 1 to 128 characters of letters, digits, '_', '.' and '-'"
        )
    return name


def _check_version(version: int | None) -> int | None:
    if version is not None and (type(version) is not int or version < 0):
        raise InvalidArgument("expected_version must be None or an integer >= 0")
    return version
