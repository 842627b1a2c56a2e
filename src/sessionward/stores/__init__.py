"""Storage backends, chosen by URL scheme. Drivers are imported only when a backend opens."""

from __future__ import annotations

from ..clock import Clock
from ..errors import ConfigurationError
from ..urls import StoreURL, parse_store_url
from .base import Store

_EXTRAS = {"redis": "redis", "postgresql": "postgres"}


def create_store(url: str | StoreURL, *, clock: Clock | None = None) -> Store:
    """Build (but do not open) the store a URL names.

    ``clock``: memory and SQLite default to the system clock; Redis and PostgreSQL use the
    server's clock unless one is given (tests drive expiry with a ``FakeClock`` this way).
    """
    parsed = parse_store_url(url)
    try:
        if parsed.backend == "memory":
            from .memory import MemoryStore

            return MemoryStore(parsed, clock=clock)
        if parsed.backend == "sqlite":
            from .sqlite import SqliteStore

            return SqliteStore(parsed, clock=clock)
        if parsed.backend == "redis":
            from .redis import RedisStore

            return RedisStore(parsed, clock=clock)
        from .postgres import PostgresStore

        return PostgresStore(parsed, clock=clock)
    except ImportError as exc:
        raise missing_driver(parsed, exc, f"the {parsed.scheme}:// backend needs") from exc


def missing_driver(parsed: StoreURL, exc: ImportError, needs: str) -> ConfigurationError:
    """The error for a backend whose driver is not installed, naming the extra to install;
    ``needs`` begins the sentence (``"the redis:// backend needs"``)."""
    extra = _EXTRAS.get(parsed.backend, parsed.backend)
    return ConfigurationError(
        f"{needs} its driver ({exc.name}): pip install 'sessionward[{extra}]'"
    )


__all__ = ["Store", "create_store", "missing_driver"]
