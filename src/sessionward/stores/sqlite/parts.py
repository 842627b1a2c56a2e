"""What the SQLite store's parts (:mod:`.sessions`, :mod:`.state`, :mod:`.users`,
:mod:`.limits`, :mod:`.budgets`, :mod:`.jobs`) use of :class:`~.store.SqliteStore`, which
provides it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
Conn = sqlite3.Connection


class SqlitePart:
    def _now(self) -> float:
        raise NotImplementedError  # SqliteStore's clock

    async def _read(self, job: Callable[[Conn], T]) -> T:
        """Run ``job`` on a reader thread's connection."""
        raise NotImplementedError

    async def _write(self, job: Callable[[Conn], T]) -> T:
        """Run ``job`` in one ``BEGIN IMMEDIATE`` transaction on the writer thread."""
        raise NotImplementedError
