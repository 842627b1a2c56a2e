"""The blocking portal SyncWard's managers call through, refusing callers on an event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, TypeVarTuple, overload

from anyio.from_thread import BlockingPortal

from .errors import ConfigurationError

T = TypeVar("T")
Args = TypeVarTuple("Args")
INSIDE_LOOP = (
    "SyncWard blocks, so it cannot be used from inside a running event loop; "
    "in async code use `async with sessionward.open_ward(...) as ward` instead"
)


def refuse_inside_event_loop() -> None:
    """:class:`ConfigurationError` if the calling thread runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise ConfigurationError(INSIDE_LOOP)


class Portal:
    """An anyio blocking portal whose ``call`` refuses a caller inside a running event loop
    (it would block that loop until the SyncWard's own loop answered)."""

    def __init__(self, portal: BlockingPortal) -> None:
        self._portal = portal

    @overload
    def call(self, func: Callable[[*Args], Awaitable[T]], *args: *Args) -> T: ...

    @overload
    def call(self, func: Callable[[*Args], T], *args: *Args) -> T: ...

    def call(self, func: Callable[[*Args], Any], *args: *Args) -> Any:
        refuse_inside_event_loop()
        return self._portal.call(func, *args)
