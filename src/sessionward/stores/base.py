"""What every backend provides: records, and one capability protocol per manager.

A store holds data and makes each operation atomic; it never decides policy. Times are
seconds since the epoch, taken from the store's own clock (the server's on Redis and
PostgreSQL, the injected :class:`~sessionward.clock.Clock` on memory and SQLite), and every
read that a manager must judge comes back with that ``now`` so that judgement uses the same
clock as the write.

A session is *live* while ``revoked_at is None and now < idle_expires_at``;
``idle_expires_at`` never passes ``expires_at``. Dead rows (expired or revoked) stay as
tombstones until ``idle_expires_at``, then any sweep may delete them; no write ever brings
one back, because every write to a session, or to its state, is conditional on it being live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from ..urls import StoreURL

StateKind = Literal["user", "session"]


@dataclass(frozen=True, slots=True)
class SessionRow:
    session_id: str
    user_id: str
    token_hash: str
    created_at: float
    last_seen_at: float
    idle_timeout: float
    idle_expires_at: float
    expires_at: float
    revoked_at: float | None
    ip: str | None
    user_agent: str | None
    metadata: str
    generation: int

    def is_live(self, now: float) -> bool:
        return self.revoked_at is None and now < self.idle_expires_at


@dataclass(frozen=True, slots=True)
class NewSessionRow:
    """A session to create; the store stamps the times with its own clock."""

    session_id: str
    user_id: str
    token_hash: str
    idle_timeout: float
    absolute_timeout: float
    ip: str | None
    user_agent: str | None
    metadata: str


@dataclass(frozen=True, slots=True)
class ByToken:
    """Find a session by the SHA-256 (hex) of its secret token."""

    token_hash: str


@dataclass(frozen=True, slots=True)
class ById:
    """Find a session by its public id; the owner must match."""

    user_id: str
    session_id: str


SessionKey = ByToken | ById


@dataclass(frozen=True, slots=True)
class Lookup:
    """A session as the store saw it (``None``: no such session), and the store's time."""

    row: SessionRow | None
    now: float


@dataclass(frozen=True, slots=True)
class Created:
    """The new session, or ``None`` when the per-user cap refused it; evicted session ids."""

    row: SessionRow | None
    evicted: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StateScope:
    """Whose documents: a user's, or one session's. The owner is always part of the key."""

    kind: StateKind
    user_id: str
    session_id: str | None = None

    def __post_init__(self) -> None:
        if (self.kind == "session") != (self.session_id is not None):
            raise ValueError("a session scope needs a session_id; a user scope takes none")


@dataclass(frozen=True, slots=True)
class StateRow:
    data: str
    version: int


@dataclass(frozen=True, slots=True)
class StateWrite:
    """Outcome of a conditional write or delete.

    ``applied``: the write happened. ``version``: the version after the write, or the
    current one (``None`` if absent) when it did not. ``owner_live`` is ``False`` when a
    session scope's session is no longer live, in which case nothing was written.
    """

    applied: bool
    version: int | None
    owner_live: bool = True


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Connections for the capacity monitor: in use, idle, callers waiting, and the cap."""

    in_use: int
    idle: int
    waiting: int
    max_size: int


class SessionStore(Protocol):
    async def create_session(
        self, new: NewSessionRow, *, max_sessions: int, evict_oldest: bool
    ) -> Created: ...

    async def find_session(self, key: SessionKey, *, touch_interval: float | None) -> Lookup:
        """Read a session; if live and ``touch_interval`` has passed since ``last_seen_at``,
        move ``last_seen_at`` to now and extend ``idle_expires_at`` (capped at ``expires_at``).
        ``None`` never touches."""
        ...

    async def rotate_session(self, key: SessionKey, new_token_hash: str) -> Lookup:
        """If live: replace the token hash, bump ``generation`` and touch. The returned row
        carries ``new_token_hash`` exactly when the rotation happened."""
        ...

    async def revoke_session(self, key: ById) -> bool:
        """Mark a live session revoked and delete its state; ``False`` if it was not live."""
        ...

    async def revoke_user_sessions(self, user_id: str, *, keep: str | None = None) -> int: ...

    async def list_sessions(self, user_id: str) -> tuple[list[SessionRow], float]:
        """The user's live sessions, oldest first, and the store's time."""
        ...

    async def sweep_sessions(self, limit: int) -> int:
        """Delete up to ``limit`` dead sessions (and their state); return how many."""
        ...


class StateStore(Protocol):
    """Documents per scope. A session scope whose session is not live reads as empty
    (``None``, ``[]``) even before a sweep deletes it, and refuses writes and deletes
    (``owner_live=False``)."""

    async def get_state(self, scope: StateScope, name: str) -> StateRow | None: ...

    async def put_state(
        self, scope: StateScope, name: str, data: str, *, expected_version: int | None
    ) -> StateWrite:
        """Write ``data``. ``expected_version``: ``None`` overwrites, ``0`` creates only,
        ``n`` writes only over version ``n``. A new document gets version 1."""
        ...

    async def delete_state(
        self, scope: StateScope, name: str, *, expected_version: int | None
    ) -> StateWrite: ...

    async def list_state(self, scope: StateScope) -> list[str]: ...


class Store(SessionStore, StateStore, Protocol):
    """A backend: open it, use it, close it."""

    url: StoreURL

    @property
    def backend(self) -> str: ...

    async def open(self) -> None:
        """Connect, create or migrate the schema, load scripts. Idempotent across processes."""
        ...

    async def aclose(self) -> None: ...

    async def ping(self) -> float:
        """One round trip to the store; returns its latency in seconds."""
        ...

    async def server_version(self) -> str: ...

    def pool_stats(self) -> PoolStats: ...


def version_matches(current: int | None, expected: int | None) -> bool:
    """The compare-and-set rule every backend applies (``0`` means "must not exist")."""
    if expected is None:
        return True
    if expected == 0:
        return current is None
    return current == expected


def stamp_new_session(new: NewSessionRow, now: float) -> SessionRow:
    expires_at = now + new.absolute_timeout
    return SessionRow(
        session_id=new.session_id,
        user_id=new.user_id,
        token_hash=new.token_hash,
        created_at=now,
        last_seen_at=now,
        idle_timeout=new.idle_timeout,
        idle_expires_at=min(now + new.idle_timeout, expires_at),
        expires_at=expires_at,
        revoked_at=None,
        ip=new.ip,
        user_agent=new.user_agent,
        metadata=new.metadata,
        generation=1,
    )


def touch_due(row: SessionRow, now: float, touch_interval: float | None) -> bool:
    """Whether a read should move ``last_seen_at`` (live, and the interval has passed)."""
    return (
        touch_interval is not None and row.is_live(now) and now - row.last_seen_at >= touch_interval
    )
