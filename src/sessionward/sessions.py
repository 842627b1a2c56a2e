"""Server-side sessions: create, validate, rotate, revoke, list, sweep.

A session has two identifiers. ``session_id`` is public and stable: it names the session in
lists, in JWTs (``sid``) and in URLs. The *token* is the secret the client presents; only its
SHA-256 is stored, and :meth:`Sessions.rotate` replaces it while keeping the record.

    new = await ward.sessions.create("alice", ip="203.0.113.9")
    session = await ward.sessions.validate(new.token)     # raises if not usable
    cart = await ward.state.get(session.scope("session"), "cart")
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import Settings
from .errors import (
    SessionAbsoluteExpired,
    SessionIdleExpired,
    SessionLimitExceeded,
    SessionRevoked,
    UnknownSession,
)
from .stores.protocols import SessionStore
from .stores.records import (
    ById,
    ByToken,
    NewSessionRow,
    SessionKey,
    SessionRow,
    StateKind,
    StateScope,
)
from .tokens import hash_token, new_public_id, new_token, plausible_token
from .validation import check_id, check_text, encode_json, possible_id


@dataclass(frozen=True, slots=True)
class Session:
    """A validated session. Times are seconds since the epoch (UTC)."""

    session_id: str
    user_id: str
    created_at: float
    last_seen_at: float
    idle_expires_at: float
    expires_at: float
    ip: str | None
    user_agent: str | None
    metadata: Mapping[str, Any]
    generation: int

    def scope(self, kind: StateKind = "user") -> StateScope:
        """The state scope this session may use: its user's, or its own."""
        if kind == "user":
            return StateScope("user", self.user_id)
        return StateScope("session", self.user_id, self.session_id)

    @classmethod
    def from_row(cls, row: SessionRow) -> Session:
        return cls(
            session_id=row.session_id,
            user_id=row.user_id,
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            idle_expires_at=row.idle_expires_at,
            expires_at=row.expires_at,
            ip=row.ip,
            user_agent=row.user_agent,
            metadata=json.loads(row.metadata),
            generation=row.generation,
        )


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session just created or rotated, with the secret token to hand to the client."""

    session: Session
    token: str = field(repr=False)
    evicted: tuple[str, ...] = ()


def judge(row: SessionRow | None, now: float) -> SessionRow:
    """Return the row if the session is usable, else raise the error that says why."""
    if row is None:
        raise UnknownSession("no such session")
    if row.revoked_at is not None:
        raise SessionRevoked("the session was revoked")
    if now >= row.expires_at:
        raise SessionAbsoluteExpired("the session reached its absolute lifetime")
    if now >= row.idle_expires_at:
        raise SessionIdleExpired("the session expired after inactivity")
    return row


class Sessions:
    """Session rules over a :class:`~sessionward.stores.protocols.SessionStore`."""

    def __init__(self, store: SessionStore, settings: Settings) -> None:
        self._store = store
        self._settings = settings

    async def create(
        self,
        user_id: str,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> NewSession:
        """Start a session for ``user_id``. Past ``sessions_per_user`` the oldest live session
        is revoked, or :class:`SessionLimitExceeded` raised, as ``session_limit_action`` says."""
        s = self._settings
        token = new_token()
        new = NewSessionRow(
            session_id=new_public_id(),
            user_id=check_id(user_id, "user_id"),
            token_hash=hash_token(token),
            idle_timeout=s.session_idle_timeout,
            absolute_timeout=s.session_absolute_timeout,
            ip=check_text(ip, "ip", 64),
            user_agent=check_text(user_agent, "user_agent", 512),
            metadata=encode_json(dict(metadata or {}), "metadata", 16_384),
        )
        created = await self._store.create_session(
            new,
            max_sessions=s.sessions_per_user,
            evict_oldest=s.session_limit_action == "evict_oldest",
        )
        if created.row is None:
            raise SessionLimitExceeded(f"user already has {s.sessions_per_user} active sessions")
        return NewSession(Session.from_row(created.row), token, created.evicted)

    async def validate(self, token: str) -> Session:
        """The session a token belongs to, if usable; raises ``UnknownSession``,
        ``SessionRevoked``, ``SessionIdleExpired`` or ``SessionAbsoluteExpired``."""
        return await self._find(self._token_key(token))

    async def get(self, user_id: str, session_id: str) -> Session:
        """Like :meth:`validate`, by public id; the session must belong to ``user_id``."""
        return await self._find(
            ById(check_id(user_id, "user_id"), check_id(session_id, "session_id"))
        )

    async def rotate(self, token: str) -> NewSession:
        """Give the session a new secret token; the old one stops working at once."""
        fresh = new_token()
        fresh_hash = hash_token(fresh)
        found = await self._store.rotate_session(self._token_key(token), fresh_hash)
        row = judge(found.row, found.now)
        if row.token_hash != fresh_hash:
            raise UnknownSession("the token was rotated concurrently")
        return NewSession(Session.from_row(row), fresh)

    async def revoke(self, user_id: str, session_id: str) -> bool:
        """Revoke one of ``user_id``'s sessions; ``False`` if it was not live (or not theirs)."""
        key = ById(check_id(user_id, "user_id"), check_id(session_id, "session_id"))
        return await self._store.revoke_session(key)

    async def revoke_by_id(self, session_id: str) -> bool:
        """Revoke a session by its id alone, whoever owns it (an administrator's call: the
        CLI's ``sessions revoke ID``); ``False`` if it was not live. The store finds the
        owner by an index on the id, then revokes as :meth:`revoke` does."""
        if not possible_id(session_id):  # names no session: never sent to the store
            return False
        owner = await self._store.find_session_owner(session_id)
        if owner is None:
            return False
        return await self._store.revoke_session(ById(owner, session_id))

    async def revoke_all(self, user_id: str, *, keep: str | None = None) -> int:
        """Revoke every live session of ``user_id`` except ``keep``; return how many."""
        return await self._store.revoke_user_sessions(check_id(user_id, "user_id"), keep=keep)

    async def list_active(self, user_id: str) -> list[Session]:
        """``user_id``'s live sessions, oldest first."""
        rows, _ = await self._store.list_sessions(check_id(user_id, "user_id"))
        return [Session.from_row(row) for row in rows]

    async def sweep(self, *, max_batches: int = 1_000) -> int:
        """Delete dead sessions in batches of ``sweep_batch_size``; return how many."""
        total = 0
        batch = self._settings.sweep_batch_size
        for _ in range(max_batches):
            swept = await self._store.sweep_sessions(batch)
            total += swept
            if swept < batch:
                break
        return total

    async def _find(self, key: SessionKey) -> Session:
        found = await self._store.find_session(
            key, touch_interval=self._settings.session_touch_interval
        )
        return Session.from_row(judge(found.row, found.now))

    @staticmethod
    def _token_key(token: str) -> ByToken:
        if not plausible_token(token):
            raise UnknownSession("no such session")
        return ByToken(hash_token(token))
