"""Storage backends, chosen by URL scheme. Drivers are imported only when a backend opens."""

from __future__ import annotations

from ..clock import Clock
from ..urls import StoreURL, parse_store_url
from .protocols import Store
from .registry import BackendEntry, backend_entry, load, missing_driver, register_backend


def create_store(url: str | StoreURL, *, clock: Clock | None = None) -> Store:
    """Build (but do not open) the store a URL names, by the backend table in
    :mod:`.registry`.

    ``clock``: memory and SQLite default to the system clock; Redis and PostgreSQL use the
    server's clock unless one is given (tests drive expiry with a ``FakeClock`` this way).
    """
    parsed = parse_store_url(url)
    entry = backend_entry(parsed)
    store_class = load(parsed, entry.store, f"the {parsed.scheme}:// backend needs")
    store: Store = store_class(parsed, clock=clock)
    return store


__all__ = [
    "BackendEntry",
    "Store",
    "create_store",
    "missing_driver",
    "register_backend",
]
