"""The memory store's sessions (a mixin of :class:`~.store.MemoryStore`), under its lock.

A session is an LRU entry, ``("s", session id)``; dropping it (the store's ``_drop_session``)
takes its token indexes, its state and its budgets with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

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
)

T = TypeVar("T")


class MemorySessions:
    """Sessions and their token indexes, under the store's one lock (``_locked``)."""

    def _locked(self, fn: Callable[[float], T]) -> T:
        raise NotImplementedError  # MemoryStore's: one lock, one process

    def _use(self, entry: tuple[str, ...] | str) -> None:
        raise NotImplementedError  # MemoryStore's LRU: mark used, drop the oldest past the cap

    def _drop_session(self, session_id: str) -> None:
        raise NotImplementedError  # MemoryStore's LRU: the session and all it owns

    def _drop_state(self, key: tuple[str, str, str]) -> None:
        raise NotImplementedError  # MemoryStore's LRU: a scope's state documents

    def __init__(self) -> None:
        self._sessions: dict[str, SessionRow] = {}
        self._tokens: dict[str, str] = {}
        self._by_user: dict[str, dict[str, None]] = {}
        self._spent: dict[str, str] = {}  # spent token hash -> session id
        self._spent_of: dict[str, list[str]] = {}

    def _get(self, key: SessionKey) -> SessionRow | None:
        if isinstance(key, ByToken):
            session_id = self._tokens.get(key.token_hash)
            row = self._sessions.get(session_id) if session_id else None
            return row if row is not None and row.token_hash == key.token_hash else None
        row = self._sessions.get(key.session_id)
        return row if row is not None and row.user_id == key.user_id else None

    def _put(self, row: SessionRow) -> SessionRow:
        self._sessions[row.session_id] = row
        self._tokens[row.token_hash] = row.session_id
        self._by_user.setdefault(row.user_id, {})[row.session_id] = None
        self._use(("s", row.session_id))
        return row

    def _live_of(self, user_id: str, now: float) -> list[SessionRow]:
        rows = [self._sessions[sid] for sid in self._by_user.get(user_id, {})]
        return sorted((r for r in rows if r.is_live(now)), key=lambda r: r.created_at)

    def _revoke(self, row: SessionRow, now: float) -> None:
        self._sessions[row.session_id] = replace(row, revoked_at=now)
        self._drop_state(("session", row.user_id, row.session_id))

    async def create_session(
        self, new: NewSessionRow, *, max_sessions: int, evict_oldest: bool
    ) -> Created:
        def op(now: float) -> Created:
            existing = self._sessions.get(new.session_id)
            if existing is not None:
                if existing.token_hash != new.token_hash:
                    raise ConfigurationError("session id collision")
                return Created(existing, ())
            live = self._live_of(new.user_id, now)
            excess = len(live) - max_sessions + 1
            if excess > 0 and not evict_oldest:
                return Created(None, ())
            evicted = live[: max(excess, 0)]
            for row in evicted:
                self._revoke(row, now)
            created = self._put(stamp_new_session(new, now))
            return Created(created, tuple(r.session_id for r in evicted))

        return self._locked(op)

    async def find_session(self, key: SessionKey, *, touch_interval: float | None) -> Lookup:
        def op(now: float) -> Lookup:
            row = self._get(key)
            if row is not None and touch_due(row, now, touch_interval):
                row = self._put(_touched(row, now))
            return Lookup(row, now)

        return self._locked(op)

    async def rotate_session(self, key: SessionKey, new_token_hash: str) -> Lookup:
        def op(now: float) -> Lookup:
            row = self._get(key)
            if row is None or not row.is_live(now):
                return Lookup(row, now)
            return Lookup(self._rotate(row, new_token_hash, now), now)

        return self._locked(op)

    def _rotate(self, row: SessionRow, new_token_hash: str, now: float) -> SessionRow:
        del self._tokens[row.token_hash]
        self._spent[row.token_hash] = row.session_id
        self._spent_of.setdefault(row.session_id, []).append(row.token_hash)
        rotated = replace(
            _touched(row, now),
            token_hash=new_token_hash,
            generation=row.generation + 1,
            prev_token_hash=row.token_hash,
            rotated_at=now,
        )
        return self._put(rotated)

    async def refresh_session(
        self, token_hash: str, new_token_hash: str, *, grace: float
    ) -> Refreshed:
        def op(now: float) -> Refreshed:
            row = self._get(ByToken(token_hash))
            if row is not None:
                if not row.is_live(now):
                    return Refreshed("dead", row, now)
                return Refreshed("rotated", self._rotate(row, new_token_hash, now), now)
            row = self._sessions.get(self._spent.get(token_hash, ""))
            if row is None:
                return Refreshed("unknown", None, now)
            outcome = refresh_of_spent(row, token_hash, new_token_hash, grace, now)
            if outcome == "reused" and row.is_live(now):
                self._revoke(row, now)
                row = self._sessions[row.session_id]
            return Refreshed(outcome, row, now)

        return self._locked(op)

    async def revoke_session(self, key: ById) -> bool:
        def op(now: float) -> bool:
            row = self._get(key)
            if row is None or not row.is_live(now):
                return False
            self._revoke(row, now)
            return True

        return self._locked(op)

    async def revoke_user_sessions(self, user_id: str, *, keep: str | None = None) -> int:
        def op(now: float) -> int:
            doomed = [r for r in self._live_of(user_id, now) if r.session_id != keep]
            for row in doomed:
                self._revoke(row, now)
            return len(doomed)

        return self._locked(op)

    async def find_session_owner(self, session_id: str) -> str | None:
        def op(now: float) -> str | None:
            row = self._sessions.get(session_id)
            return None if row is None else row.user_id

        return self._locked(op)

    async def list_sessions(self, user_id: str) -> tuple[list[SessionRow], float]:
        return self._locked(lambda now: (self._live_of(user_id, now), now))

    async def sweep_sessions(self, limit: int) -> int:
        def op(now: float) -> int:
            dead = [r.session_id for r in self._sessions.values() if now >= r.idle_expires_at]
            for session_id in dead[:limit]:
                self._drop_session(session_id)
            return min(len(dead), limit)

        return self._locked(op)


def _touched(row: SessionRow, now: float) -> SessionRow:
    return replace(
        row, last_seen_at=now, idle_expires_at=min(now + row.idle_timeout, row.expires_at)
    )
