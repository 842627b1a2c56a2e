"""The compare-and-set rule every state backend applies."""

from __future__ import annotations


def version_matches(current: int | None, expected: int | None) -> bool:
    """The compare-and-set rule every backend applies (``0`` means "must not exist")."""
    if expected is None:
        return True
    if expected == 0:
        return current is None
    return current == expected
