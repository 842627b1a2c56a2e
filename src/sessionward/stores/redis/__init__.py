"""The Redis backend: :class:`RedisStore` (``redis://`` URLs) and its event transport
(:mod:`.events`). One module per capability, each a base of the store; the Lua scripts,
one per atomic operation, are in ``lua/``."""

from __future__ import annotations

# The driver first, so that a missing one fails in this very module (create_store turns that
# into an install hint) even when the modules below are already loaded.
import redis  # noqa: F401

from .store import RedisStore

__all__ = ["RedisStore"]
