"""The PostgreSQL backend: :class:`PostgresStore` (see :mod:`.store`)."""

from __future__ import annotations

from .connection import conninfo, is_transient
from .store import PostgresStore

__all__ = ["PostgresStore", "conninfo", "is_transient"]
