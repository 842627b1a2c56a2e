"""The session rules every backend applies: stamping a new session, touching, refresh replay."""

from __future__ import annotations

from ..stores.records import NewSessionRow, RefreshOutcome, SessionRow


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


def refresh_of_spent(
    row: SessionRow, token_hash: str, new_token_hash: str, grace: float, now: float
) -> RefreshOutcome:
    """For a spent hash: a replay of the latest rotation within grace, else a reuse."""
    replay = (
        row.prev_token_hash == token_hash
        and row.token_hash == new_token_hash
        and row.rotated_at is not None
        and now - row.rotated_at <= grace
        and row.is_live(now)
    )
    return "replayed" if replay else "reused"


def touch_due(row: SessionRow, now: float, touch_interval: float | None) -> bool:
    """Whether a read should move ``last_seen_at`` (live, and the interval has passed)."""
    return (
        touch_interval is not None and row.is_live(now) and now - row.last_seen_at >= touch_interval
    )
