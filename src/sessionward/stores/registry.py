"""Which class serves a backend: one table from backend name to its store and its event
transport, as ``"module:Class"`` strings imported only when a URL of that backend opens, so
a missing driver fails then, naming the extra to install.

A backend outside this package registers itself with :func:`register_backend` and runs the
conformance suite in :mod:`sessionward.testing` (see docs/stores.md, "Adding a backend").
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..errors import ConfigurationError
from ..urls import BackendOptions, MemoryOptions, StoreURL, register_scheme


@dataclass(frozen=True, slots=True)
class BackendEntry:
    """``store``: ``"module:Class"`` of the store, built as ``Class(url, clock=clock)``.
    ``events``: ``"module:Class"`` of the event transport, built as
    ``Class(url, heartbeat=seconds)``; ``None`` means events stay in this process.
    ``extra``: the pip extra that installs the driver, named when its import fails."""

    store: str
    events: str | None = None
    extra: str | None = None


_BACKENDS: dict[str, BackendEntry] = {
    "memory": BackendEntry("sessionward.stores.memory:MemoryStore"),
    "sqlite": BackendEntry("sessionward.stores.sqlite:SqliteStore"),
    "redis": BackendEntry(
        "sessionward.stores.redis:RedisStore",
        events="sessionward.stores.redis.events:RedisTransport",
        extra="redis",
    ),
    "postgresql": BackendEntry(
        "sessionward.stores.postgres:PostgresStore",
        events="sessionward.stores.postgres.events:PostgresTransport",
        extra="postgres",
    ),
}


def register_backend(
    name: str,
    entry: BackendEntry,
    *,
    schemes: tuple[str, ...] = (),
    options: type[BackendOptions] = MemoryOptions,
) -> None:
    """Serve ``name`` (a :attr:`StoreURL.backend`) with ``entry``; replaces an earlier entry.

    ``schemes``: the URL schemes that name this backend (a new backend needs at least one),
    their query checked by ``options``:

        register_backend("wrapped", BackendEntry("myapp.store:WrappedStore"), schemes=("wrapped",))
        create_store("wrapped://?max_entries=10")   # WrappedStore(url, clock=None)
    """
    for scheme in schemes:
        register_scheme(scheme, name, options)
    _BACKENDS[name] = entry


def backend_entry(url: StoreURL) -> BackendEntry:
    entry = _BACKENDS.get(url.backend)
    if entry is None:
        raise ConfigurationError(f"no backend is registered for {url.scheme}:// URLs")
    return entry


def load(url: StoreURL, target: str, needs: str) -> type:
    """Import the class ``target`` names; ``needs`` begins the missing-driver sentence
    (``"the redis:// backend needs"``)."""
    module, _, name = target.partition(":")
    try:
        found: type = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise missing_driver(url, exc, needs) from exc
    return found


def missing_driver(url: StoreURL, exc: ImportError, needs: str) -> ConfigurationError:
    """The error for a backend whose driver is not installed, naming the extra to install."""
    entry = _BACKENDS.get(url.backend)
    extra = entry.extra if entry is not None and entry.extra else url.backend
    return ConfigurationError(
        f"{needs} its driver ({exc.name}): pip install 'sessionward[{extra}]'"
    )
