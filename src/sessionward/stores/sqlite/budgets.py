"""The SQLite store's budgets, ledgers and holds (a mixin of :class:`~.store.SqliteStore`).

Every operation that moves money is one ``BEGIN IMMEDIATE`` transaction on the writer: the
session's liveness, the budgets, the idempotency key, the ledger line and the totals are
read and written together, so a crash leaves either all of it or none. The table's
``CHECK (spent + held <= budget_limit)``, the unique idempotency index and the unique
``refund_of`` are backstops should the code above ever be wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...rules.budgets import charge_refusal
from ..records import (
    BudgetOutcome,
    BudgetRow,
    BudgetStatus,
    ChargeRequest,
    LedgerEntry,
    LedgerProblem,
    StateScope,
    UserBudgetRow,
)
from .parts import Conn, SqlitePart
from .sessions import owner_live

_ENTRY = ("SELECT entry_id, user_id, session_id, kind, amount, idempotency_key, description, "
          "created_at, refund_of FROM sw_ledger")  # fmt: skip
_OWNER = "user_id = ? AND session_id = ?"


def _entry(values: Sequence[Any] | None) -> LedgerEntry | None:
    return None if values is None else LedgerEntry(*values)


class SqliteBudgets(SqlitePart):
    async def get_budget(
        self, user_id: str, session_id: str, *, default_limit: int, currency: str
    ) -> BudgetRow:
        owner = (user_id, session_id)
        return await self._write(lambda c: _budget(c, owner, default_limit, currency, self._now()))

    async def set_budget(
        self, user_id: str, session_id: str, *, limit: int, currency: str
    ) -> BudgetRow | None:
        def job(conn: Conn) -> BudgetRow | None:
            budget = _budget(conn, (user_id, session_id), limit, currency, self._now())
            if limit < budget.spent + budget.held:
                return None
            _save(conn, BudgetRow(user_id, session_id, limit, budget.spent, budget.held, currency))
            return _budget(conn, (user_id, session_id), limit, currency, self._now())

        return await self._write(job)

    async def get_user_budget(self, user_id: str) -> UserBudgetRow | None:
        return await self._read(lambda conn: _user_budget(conn, user_id))

    async def set_user_budget(self, user_id: str, limit: int | None) -> UserBudgetRow | None:
        def job(conn: Conn) -> UserBudgetRow | None:
            if limit is None:
                conn.execute("DELETE FROM sw_user_budgets WHERE user_id = ?", (user_id,))
                return None
            wanted = _user_budget(conn, user_id, limit)
            assert wanted is not None
            if limit < wanted.spent + wanted.held:
                return None
            conn.execute("INSERT INTO sw_user_budgets VALUES (?, ?) ON CONFLICT (user_id) "
                         "DO UPDATE SET budget_limit = excluded.budget_limit",
                         (user_id, limit))  # fmt: skip
            return wanted

        return await self._write(job)

    async def charge(self, request: ChargeRequest) -> BudgetOutcome:
        return await self._write(lambda conn: self._spend(conn, request, hold=False))

    async def reserve(self, request: ChargeRequest) -> BudgetOutcome:
        return await self._write(lambda conn: self._spend(conn, request, hold=True))

    def _spend(self, conn: Conn, r: ChargeRequest, *, hold: bool) -> BudgetOutcome:
        now, owner = self._now(), (r.user_id, r.session_id)
        if not _session_live(conn, owner, now):
            return BudgetOutcome("closed", None, None)
        budget = _budget(conn, owner, r.default_limit, r.currency, now)
        if r.idempotency_key is not None:
            first = _entry(conn.execute(f"{_ENTRY} WHERE {_OWNER} AND idempotency_key = ?",
                                        (*owner, r.idempotency_key)).fetchone())  # fmt: skip
            if first is not None:
                status: BudgetStatus = "replayed" if first.amount == r.amount else "mismatch"
                return _outcome(conn, status, first, budget)
        refusal = charge_refusal(budget, _user_budget(conn, r.user_id), r.amount)
        if refusal is not None:
            return _outcome(conn, refusal, None, budget)
        if hold:
            conn.execute("INSERT INTO sw_holds VALUES (?, ?, ?, ?, ?)",
                         (r.entry_id, *owner, r.amount, now + r.hold_ttl))  # fmt: skip
            budget = _move(conn, budget, held=r.amount)
            return _outcome(conn, "held", None, budget, r.entry_id)
        entry = LedgerEntry(r.entry_id, *owner, "charge", r.amount, r.idempotency_key,
                            r.description, now)  # fmt: skip
        _insert(conn, entry)
        return _outcome(conn, "charged", entry, _move(conn, budget, spent=r.amount))

    async def refund(
        self, user_id: str, session_id: str, charge_id: str, refund_id: str
    ) -> BudgetOutcome:
        def job(conn: Conn) -> BudgetOutcome:
            owner = (user_id, session_id)
            charge = _entry(conn.execute(f"{_ENTRY} WHERE entry_id = ? AND {_OWNER}",
                                         (charge_id, *owner)).fetchone())  # fmt: skip
            if charge is None:
                return BudgetOutcome("unknown", None, None)
            budget = _budget(conn, owner, 0, "", self._now())
            done = conn.execute("SELECT 1 FROM sw_ledger WHERE refund_of = ?", (charge_id,))
            if charge.kind != "charge" or done.fetchone() is not None:
                return _outcome(conn, "already", charge, budget)
            entry = LedgerEntry(refund_id, *owner, "refund", -charge.amount, None,
                                f"refund of {charge_id}", self._now(), charge_id)  # fmt: skip
            _insert(conn, entry)
            return _outcome(conn, "refunded", entry, _move(conn, budget, spent=-charge.amount))

        return await self._write(job)

    async def capture(
        self, user_id: str, session_id: str, hold_id: str, actual: int, entry_id: str,
        description: str,
    ) -> BudgetOutcome:  # fmt: skip
        def job(conn: Conn) -> BudgetOutcome:
            owner, now = (user_id, session_id), self._now()
            budget = _budget(conn, owner, 0, "", now)
            held = _hold_amount(conn, owner, hold_id)
            if held is None:
                return BudgetOutcome("unknown", None, None)
            if actual > held:
                return _outcome(conn, "too_much", None, budget, hold_id)
            conn.execute("DELETE FROM sw_holds WHERE hold_id = ?", (hold_id,))
            entry = None
            if actual > 0:
                entry = LedgerEntry(entry_id, *owner, "charge", actual, None, description, now)
                _insert(conn, entry)
            budget = _move(conn, budget, spent=actual, held=-held)
            return _outcome(conn, "captured", entry, budget, hold_id)

        return await self._write(job)

    async def release(self, user_id: str, session_id: str, hold_id: str) -> BudgetOutcome:
        def job(conn: Conn) -> BudgetOutcome:
            owner = (user_id, session_id)
            budget = _budget(conn, owner, 0, "", self._now())
            held = _hold_amount(conn, owner, hold_id)
            if held is None:
                return BudgetOutcome("unknown", None, None)
            conn.execute("DELETE FROM sw_holds WHERE hold_id = ?", (hold_id,))
            return _outcome(conn, "released", None, _move(conn, budget, held=-held), hold_id)

        return await self._write(job)

    async def list_charges(
        self, user_id: str, session_id: str, *, after: str | None, limit: int
    ) -> list[LedgerEntry]:
        def job(conn: Conn) -> list[LedgerEntry]:
            start = 0
            if after is not None:
                found = conn.execute(f"SELECT seq FROM sw_ledger WHERE entry_id = ? AND {_OWNER}",
                                     (after, user_id, session_id)).fetchone()  # fmt: skip
                if found is None:
                    return []
                start = found[0]
            rows = conn.execute(f"{_ENTRY} WHERE {_OWNER} AND seq > ? ORDER BY seq LIMIT ?",
                                (user_id, session_id, start, limit)).fetchall()  # fmt: skip
            return [LedgerEntry(*row) for row in rows]

        return await self._read(job)

    async def sweep_holds(self, limit: int) -> int:
        def job(conn: Conn) -> int:
            expired = conn.execute(
                "SELECT hold_id, user_id, session_id, amount FROM sw_holds WHERE expires_at <= ? "
                "ORDER BY expires_at LIMIT ?",
                (self._now(), limit),
            ).fetchall()
            for hold_id, user_id, session_id, amount in expired:
                conn.execute("DELETE FROM sw_holds WHERE hold_id = ?", (hold_id,))
                conn.execute(f"UPDATE sw_budgets SET held = held - ? WHERE {_OWNER}",
                             (amount, user_id, session_id))  # fmt: skip
            return len(expired)

        return await self._write(job)

    async def verify_ledger(self) -> list[LedgerProblem]:
        def job(conn: Conn) -> list[LedgerProblem]:
            rows = conn.execute(
                "SELECT b.user_id, b.session_id, b.spent, "
                "(SELECT coalesce(sum(amount), 0) FROM sw_ledger l WHERE l.user_id = b.user_id "
                " AND l.session_id = b.session_id), b.held, "
                "(SELECT coalesce(sum(amount), 0) FROM sw_holds h WHERE h.user_id = b.user_id "
                " AND h.session_id = b.session_id) FROM sw_budgets b"
            ).fetchall()
            problems = []
            for user, sid, spent, ledger, held, holds in rows:
                if spent != ledger:
                    problems.append(LedgerProblem(user, sid, "spent", spent, ledger))
                if held != holds:
                    problems.append(LedgerProblem(user, sid, "held", held, holds))
            return problems

        return await self._read(job)


def _session_live(conn: Conn, owner: tuple[str, str], now: float) -> bool:
    return owner_live(conn, StateScope("session", owner[0], owner[1]), now)


def _budget(conn: Conn, owner: tuple[str, str], default: int, currency: str,
            now: float) -> BudgetRow:  # fmt: skip
    _expire_holds(conn, owner, now)
    row = conn.execute(f"SELECT budget_limit, spent, held, currency FROM sw_budgets WHERE {_OWNER}",
                       owner).fetchone()  # fmt: skip
    if row is None:
        return BudgetRow(*owner, default, 0, 0, currency)
    return BudgetRow(*owner, *row)


def _expire_holds(conn: Conn, owner: tuple[str, str], now: float) -> int:
    found = conn.execute(f"SELECT count(*), coalesce(sum(amount), 0) FROM sw_holds WHERE "
                         f"{_OWNER} AND expires_at <= ?", (*owner, now)).fetchone()  # fmt: skip
    if found[0]:
        conn.execute(f"DELETE FROM sw_holds WHERE {_OWNER} AND expires_at <= ?", (*owner, now))
        conn.execute(f"UPDATE sw_budgets SET held = held - ? WHERE {_OWNER}", (found[1], *owner))
    return int(found[0])


def _save(conn: Conn, b: BudgetRow) -> None:
    conn.execute(
        "INSERT INTO sw_budgets VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, session_id) DO "
        "UPDATE SET budget_limit = excluded.budget_limit, spent = excluded.spent, "
        "held = excluded.held, currency = excluded.currency",
        (b.user_id, b.session_id, b.limit, b.spent, b.held, b.currency),
    )


def _move(conn: Conn, budget: BudgetRow, *, spent: int = 0, held: int = 0) -> BudgetRow:
    moved = BudgetRow(budget.user_id, budget.session_id, budget.limit, budget.spent + spent,
                      budget.held + held, budget.currency)  # fmt: skip
    _save(conn, moved)
    return moved


def _insert(conn: Conn, e: LedgerEntry) -> None:
    conn.execute(
        "INSERT INTO sw_ledger (entry_id, user_id, session_id, kind, amount, idempotency_key, "
        "description, created_at, refund_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (e.entry_id, e.user_id, e.session_id, e.kind, e.amount, e.idempotency_key,
         e.description, e.created_at, e.refund_of),
    )  # fmt: skip


def _hold_amount(conn: Conn, owner: tuple[str, str], hold_id: str) -> int | None:
    row = conn.execute(f"SELECT amount FROM sw_holds WHERE hold_id = ? AND {_OWNER}",
                       (hold_id, *owner)).fetchone()  # fmt: skip
    return None if row is None else int(row[0])


def _user_budget(conn: Conn, user_id: str, limit: int | None = None) -> UserBudgetRow | None:
    if limit is None:
        row = conn.execute("SELECT budget_limit FROM sw_user_budgets WHERE user_id = ?",
                           (user_id,)).fetchone()  # fmt: skip
        if row is None:
            return None
        limit = int(row[0])
    spent, held = conn.execute("SELECT coalesce(sum(spent), 0), coalesce(sum(held), 0) FROM "
                               "sw_budgets WHERE user_id = ?", (user_id,)).fetchone()  # fmt: skip
    return UserBudgetRow(user_id, limit, int(spent), int(held))


def _outcome(conn: Conn, status: BudgetStatus, entry: LedgerEntry | None, budget: BudgetRow,
             hold_id: str | None = None) -> BudgetOutcome:  # fmt: skip
    return BudgetOutcome(status, entry, budget, _user_budget(conn, budget.user_id), hold_id)
