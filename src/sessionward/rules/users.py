"""The user-change rule every backend applies."""

from __future__ import annotations

from dataclasses import replace

from ..stores.records import UserChange, UserRow


def apply_change(row: UserRow, change: UserChange, now: float) -> UserRow:
    """The user after ``change`` (the rule every backend applies)."""
    return replace(
        row,
        password_hash=change.password_hash or row.password_hash,
        disabled=row.disabled if change.disabled is None else change.disabled,
        roles=row.roles if change.roles is None else change.roles,
        updated_at=now,
    )
