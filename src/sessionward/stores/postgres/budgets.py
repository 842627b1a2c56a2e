"""The PostgreSQL store's budgets, ledgers and holds (a layer of :class:`~.store.PostgresStore`).

Each operation that moves money is one call of a PL/pgSQL function of migration 3 (see
:mod:`.budgets_schema` for the locks each takes and why they make it exact): one
autocommit statement, one round trip. Its locks are held only while the server runs it
(and flushes its commit), never across a client round trip, so a session's charges queue
on its budget row for as short a time as possible; measured against BEGIN, call, COMMIT
(which holds the locks through the client's COMMIT round trip) it doubles the charges a
hot session takes per second. A call is never repeated once sent unless the server rolled
it back (a connection lost during it may have come after its commit); a pooled
connection the server had already closed is replaced before sending (:mod:`.connection`).
Reads are one statement each; ``get_budget``, ``set_budget`` and ``set_user_budget`` set
values, so they may be repeated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import sql

from ...clock import Clock
from ...urls import StoreURL
from ..records import (
    BudgetOutcome,
    BudgetRow,
    ChargeRequest,
    LedgerEntry,
    LedgerProblem,
    UserBudgetRow,
)
from .connection import PostgresCore
from .schema import lock_key, table_names
from .statements import Params, compose_into

_ENTRY = ("l.entry_id, l.user_id, l.session_id, l.kind, l.amount, l.idempotency_key, "
          "l.description, l.created_at, l.refund_of")  # fmt: skip
_CLOCK = "COALESCE(%(now)s::float8, extract(epoch FROM clock_timestamp())::float8)"

_TEMPLATES = {
    "spend": """SELECT * FROM {spend}(%(user_id)s, %(session_id)s, %(amount)s::int8,
    %(entry_id)s, %(key)s::text, %(description)s, %(default_limit)s::int8, %(currency)s,
    %(hold_ttl)s::float8, %(hold)s, %(now)s::float8, %(limit_lock)s::int8,
    %(spend_lock)s::int8)""",
    "refund": """SELECT * FROM {refund}(%(user_id)s, %(session_id)s, %(charge_id)s,
    %(refund_id)s, %(now)s::float8)""",
    "settle": """SELECT * FROM {settle}(%(user_id)s, %(session_id)s, %(hold_id)s,
    %(actual)s::int8, %(entry_id)s::text, %(description)s::text, %(now)s::float8)""",
    "budget": """SELECT budget_limit, spent, held, currency FROM {budget}(%(user_id)s,
    %(session_id)s, %(limit)s::int8, %(currency)s, %(set)s, %(now)s::float8)""",
    "user_limit": "SELECT * FROM {user_limit}(%(user_id)s, %(limit)s::int8, %(lock)s::int8)",
    "user_budget": """SELECT u.budget_limit, COALESCE(sum(b.spent), 0)::int8,
    COALESCE(sum(b.held), 0)::int8
FROM {user_budgets} AS u LEFT JOIN {budgets} AS b ON b.user_id = u.user_id
WHERE u.user_id = %(user_id)s GROUP BY u.budget_limit""",
    # Within a session, seq order is commit order: its lines are written under its row lock.
    "list_charges": """SELECT {entry} FROM {ledger} AS l
WHERE l.user_id = %(user_id)s AND l.session_id = %(session_id)s
  AND (%(after)s::text IS NULL OR l.seq > (
      SELECT a.seq FROM {ledger} AS a WHERE a.entry_id = %(after)s::text
        AND a.user_id = %(user_id)s AND a.session_id = %(session_id)s))
ORDER BY l.seq LIMIT %(limit)s""",
    # Bounded and never waiting: budgets locked by a spend are left for the next sweep. The
    # budget row is locked before its holds are deleted, the order every writer takes.
    "sweep_holds": """WITH clock AS MATERIALIZED (SELECT {clock} AS now),
expired AS MATERIALIZED (
    SELECT h.hold_id, h.user_id, h.session_id FROM {holds} AS h, clock
    WHERE h.expires_at <= clock.now ORDER BY h.expires_at LIMIT %(limit)s
), owners AS MATERIALIZED (
    SELECT b.user_id, b.session_id FROM {budgets} AS b
    WHERE (b.user_id, b.session_id) IN (SELECT e.user_id, e.session_id FROM expired AS e)
    FOR UPDATE OF b SKIP LOCKED
), gone AS (
    DELETE FROM {holds} AS h USING expired AS e, owners AS o
    WHERE h.hold_id = e.hold_id AND o.user_id = e.user_id AND o.session_id = e.session_id
    RETURNING h.user_id, h.session_id, h.amount
), moved AS (
    UPDATE {budgets} AS b SET held = b.held - g.amount
    FROM (SELECT user_id, session_id, sum(amount)::int8 AS amount FROM gone
          GROUP BY user_id, session_id) AS g
    WHERE b.user_id = g.user_id AND b.session_id = g.session_id
)
SELECT count(*) FROM gone""",
    # One snapshot: every budget (and any ledger or holds left without one) whose totals
    # differ from the sums of its ledger and its holds.
    "verify": """SELECT k.user_id, k.session_id, COALESCE(b.spent, 0)::int8,
    COALESCE(l.total, 0)::int8, COALESCE(b.held, 0)::int8, COALESCE(h.total, 0)::int8
FROM (SELECT user_id, session_id FROM {budgets}
      UNION SELECT user_id, session_id FROM {ledger}
      UNION SELECT user_id, session_id FROM {holds}) AS k
LEFT JOIN {budgets} AS b ON b.user_id = k.user_id AND b.session_id = k.session_id
LEFT JOIN (SELECT user_id, session_id, sum(amount) AS total FROM {ledger}
           GROUP BY user_id, session_id) AS l
       ON l.user_id = k.user_id AND l.session_id = k.session_id
LEFT JOIN (SELECT user_id, session_id, sum(amount) AS total FROM {holds}
           GROUP BY user_id, session_id) AS h
       ON h.user_id = k.user_id AND h.session_id = k.session_id
WHERE COALESCE(b.spent, 0) <> COALESCE(l.total, 0) OR COALESCE(b.held, 0) <> COALESCE(h.total, 0)
ORDER BY k.user_id, k.session_id""",
}


@dataclass(frozen=True, slots=True)
class LedgerStatements:
    spend: sql.Composed
    refund: sql.Composed
    settle: sql.Composed
    budget: sql.Composed
    user_limit: sql.Composed
    user_budget: sql.Composed
    list_charges: sql.Composed
    sweep_holds: sql.Composed
    verify: sql.Composed


def compose_ledger(schema: str) -> LedgerStatements:
    names = {**table_names(schema), "entry": sql.SQL(_ENTRY), "clock": sql.SQL(_CLOCK)}
    return compose_into(LedgerStatements, _TEMPLATES, names)


class PostgresBudgets(PostgresCore):
    def __init__(self, url: StoreURL, *, clock: Clock | None = None) -> None:
        super().__init__(url, clock=clock)
        self._ledger = compose_ledger(self._schema)

    async def _move(
        self, query: sql.Composed, params: Params, owner: tuple[str, str]
    ) -> BudgetOutcome:
        """One call of a money-moving function; never repeated once it may have committed."""
        return _outcome(await self._one(query, params, idempotent=False), *owner)

    def _owner(self, user_id: str, session_id: str) -> Params:
        return {"user_id": user_id, "session_id": session_id, "now": self._now()}

    async def get_budget(
        self, user_id: str, session_id: str, *, default_limit: int, currency: str
    ) -> BudgetRow:
        params = {**self._owner(user_id, session_id), "limit": default_limit,
                  "currency": currency, "set": False}  # fmt: skip
        row = await self._one(self._ledger.budget, params)
        assert row is not None  # the stored budget or the default
        return BudgetRow(user_id, session_id, *row)

    async def set_budget(
        self, user_id: str, session_id: str, *, limit: int, currency: str
    ) -> BudgetRow | None:
        params = {**self._owner(user_id, session_id), "limit": limit, "currency": currency,
                  "set": True}  # fmt: skip
        # Setting a value: a repeat after a lost COMMIT finds it set and returns the same.
        row = await self._one(self._ledger.budget, params)
        return None if row is None else BudgetRow(user_id, session_id, *row)

    async def get_user_budget(self, user_id: str) -> UserBudgetRow | None:
        row = await self._one(self._ledger.user_budget, {"user_id": user_id})
        return None if row is None else UserBudgetRow(user_id, *row)

    async def set_user_budget(self, user_id: str, limit: int | None) -> UserBudgetRow | None:
        params = {"user_id": user_id, "limit": limit, "lock": self._limit_lock(user_id)}
        row = await self._one(self._ledger.user_limit, params)
        return None if row is None else UserBudgetRow(user_id, *row)

    def _limit_lock(self, user_id: str) -> int:
        return lock_key(self._schema, "budget-limit", user_id)

    async def charge(self, request: ChargeRequest) -> BudgetOutcome:
        return await self._spend(request, hold=False)

    async def reserve(self, request: ChargeRequest) -> BudgetOutcome:
        return await self._spend(request, hold=True)

    async def _spend(self, r: ChargeRequest, *, hold: bool) -> BudgetOutcome:
        params = {
            **self._owner(r.user_id, r.session_id),
            "amount": r.amount, "entry_id": r.entry_id, "key": r.idempotency_key,
            "description": r.description, "default_limit": r.default_limit,
            "currency": r.currency, "hold_ttl": r.hold_ttl, "hold": hold,
            "limit_lock": self._limit_lock(r.user_id),
            "spend_lock": lock_key(self._schema, "budget-spend", r.user_id),
        }  # fmt: skip
        return await self._move(self._ledger.spend, params, (r.user_id, r.session_id))

    async def refund(
        self, user_id: str, session_id: str, charge_id: str, refund_id: str
    ) -> BudgetOutcome:
        params = {**self._owner(user_id, session_id), "charge_id": charge_id,
                  "refund_id": refund_id}  # fmt: skip
        return await self._move(self._ledger.refund, params, (user_id, session_id))

    async def capture(
        self, user_id: str, session_id: str, hold_id: str, actual: int, entry_id: str,
        description: str,
    ) -> BudgetOutcome:  # fmt: skip
        params = {**self._owner(user_id, session_id), "hold_id": hold_id, "actual": actual,
                  "entry_id": entry_id, "description": description}  # fmt: skip
        return await self._move(self._ledger.settle, params, (user_id, session_id))

    async def release(self, user_id: str, session_id: str, hold_id: str) -> BudgetOutcome:
        params = {**self._owner(user_id, session_id), "hold_id": hold_id, "actual": None,
                  "entry_id": None, "description": None}  # fmt: skip
        return await self._move(self._ledger.settle, params, (user_id, session_id))

    async def list_charges(
        self, user_id: str, session_id: str, *, after: str | None, limit: int
    ) -> list[LedgerEntry]:
        if limit <= 0:
            return []
        params = {"user_id": user_id, "session_id": session_id, "after": after, "limit": limit}
        return [LedgerEntry(*row) for row in await self._all(self._ledger.list_charges, params)]

    async def sweep_holds(self, limit: int) -> int:
        if limit <= 0:
            return 0
        row = await self._one(self._ledger.sweep_holds, {"limit": limit, "now": self._now()})
        assert row is not None
        return int(row[0])

    async def verify_ledger(self) -> list[LedgerProblem]:
        problems = []
        for user, sid, spent, ledger, held, holds in await self._all(self._ledger.verify, {}):
            if spent != ledger:
                problems.append(LedgerProblem(user, sid, "spent", spent, ledger))
            if held != holds:
                problems.append(LedgerProblem(user, sid, "held", held, holds))
        return problems


def _outcome(row: Any, user_id: str, session_id: str) -> BudgetOutcome:
    (status, limit, spent, held, currency, user_limit, user_spent, user_held,
     entry_id, kind, amount, key, description, created_at, refund_of, hold_id) = row  # fmt: skip
    budget = None if limit is None else BudgetRow(user_id, session_id, limit, spent, held,
                                                   currency)  # fmt: skip
    user = None if user_limit is None else UserBudgetRow(user_id, user_limit, user_spent,
                                                          user_held)  # fmt: skip
    entry = None if entry_id is None else LedgerEntry(
        entry_id, user_id, session_id, kind, amount, key, description, created_at, refund_of
    )  # fmt: skip
    return BudgetOutcome(status, entry, budget, user, hold_id)
