"""The capacity monitor's rules that stores apply: which sessions count as active."""

from __future__ import annotations

from ..stores.records import SessionRow


def is_active(row: SessionRow, now: float, window: float) -> bool:
    """Live, and seen within ``window`` seconds of ``now``. Restated in SQL by the SQLite
    and PostgreSQL stores' ``count_active``; the capacity conformance suite keeps them in
    step."""
    return row.is_live(now) and row.last_seen_at >= now - window
