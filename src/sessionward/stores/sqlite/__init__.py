"""The SQLite store: :class:`SqliteStore`, one file in WAL mode (``sqlite://``)."""

from __future__ import annotations

from .store import SqliteStore

__all__ = ["SqliteStore"]
