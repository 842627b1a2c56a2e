"""PostgreSQL store: psycopg 3 and an async connection pool, tables in one named schema.

Each operation is one statement, or one short transaction that takes its locks in one
order (the user's advisory lock, then session rows, then state rows), so it is atomic
against any number of processes. Times come from the server's ``clock_timestamp()`` unless
a clock is injected, so app servers with skewed clocks agree.

Failures: connection loss, pool timeouts, deadlocks and serialization failures are
retried. A transaction that failed before COMMIT was rolled back, so even a
compare-and-set is retried then; one that lost its connection during COMMIT may have been
applied, so a compare-and-set is not repeated and raises ``StorageUnavailable``.

Modules: the pool, lifecycle and retry rules are in :mod:`.connection`; one module per
capability (:mod:`.sessions`, :mod:`.state`, :mod:`.users`, :mod:`.limits`,
:mod:`.budgets`, :mod:`.jobs`, :mod:`.capacity`); statements in :mod:`.statements`,
tables and migrations in :mod:`.schema`.
"""

from __future__ import annotations

from .budgets import PostgresBudgets
from .capacity import PostgresCapacity
from .jobs import PostgresJobs
from .limits import PostgresLimits
from .sessions import PostgresSessions
from .state import PostgresState
from .users import PostgresUsers

__all__ = ["PostgresStore"]


class PostgresStore(
    PostgresSessions,
    PostgresState,
    PostgresUsers,
    PostgresLimits,
    PostgresBudgets,
    PostgresJobs,
    PostgresCapacity,
):
    """Every capability, on one pool and one set of composed statements
    (:class:`~.connection.PostgresCore`)."""
