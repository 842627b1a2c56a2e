"""The in-process store: :class:`MemoryStore`, one lock and an LRU cap (``memory://``)."""

from __future__ import annotations

from .store import MemoryStore

__all__ = ["MemoryStore"]
