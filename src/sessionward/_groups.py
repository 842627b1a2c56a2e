"""Exception groups from our own task groups, unwrapped for the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


@asynccontextmanager
async def collapse_single_errors() -> AsyncIterator[None]:
    """The caller's code runs inside our task group; a single exception from it should reach
    the caller as itself, not wrapped in an ExceptionGroup."""
    try:
        yield
    except BaseExceptionGroup as group:
        while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
            group = group.exceptions[0]
        raise group from None
