"""The memory store's budgets, ledgers and holds (a mixin of :class:`~.store.MemoryStore`).

Every operation runs under the store's one lock. A session's budget data goes when the
session is dropped, so it is bounded by the store's cap like the session itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

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

T = TypeVar("T")
_Owner = tuple[str, str]


@dataclass(frozen=True, slots=True)
class _Hold:
    amount: int
    expires_at: float


class MemoryBudgets:
    """Budgets and ledgers under the store's one lock (``_locked``)."""

    def _locked(self, fn: Callable[[float], T]) -> T:
        raise NotImplementedError  # MemoryStore's

    def _owner_live(self, scope: StateScope, now: float) -> bool:
        raise NotImplementedError  # MemoryStore's

    def __init__(self) -> None:
        self._budgets: dict[_Owner, BudgetRow] = {}
        self._user_limits: dict[str, int] = {}
        self._ledger: dict[_Owner, list[LedgerEntry]] = {}
        self._entries: dict[str, LedgerEntry] = {}
        self._idempotency: dict[tuple[str, str, str], str] = {}
        self._refunded: set[str] = set()
        self._holds: dict[_Owner, dict[str, _Hold]] = {}

    def _drop_budget(self, user_id: str, session_id: str) -> None:
        owner = (user_id, session_id)
        budget = self._budgets.pop(owner, None)
        for entry in self._ledger.pop(owner, []):
            self._entries.pop(entry.entry_id, None)
            self._refunded.discard(entry.entry_id)
            if entry.idempotency_key is not None:
                self._idempotency.pop((user_id, session_id, entry.idempotency_key), None)
        self._holds.pop(owner, None)
        del budget

    def _budget(self, owner: _Owner, default_limit: int, currency: str, now: float) -> BudgetRow:
        budget = self._budgets.get(owner)
        if budget is None:
            budget = BudgetRow(owner[0], owner[1], default_limit, 0, 0, currency)
        return self._expire_holds(owner, budget, now)

    def _expire_holds(self, owner: _Owner, budget: BudgetRow, now: float) -> BudgetRow:
        holds = self._holds.get(owner, {})
        for hold_id in [h for h, hold in holds.items() if hold.expires_at <= now]:
            budget = self._move(budget, held=-holds.pop(hold_id).amount)
        return budget

    def _move(self, budget: BudgetRow, *, spent: int = 0, held: int = 0) -> BudgetRow:
        moved = replace(budget, spent=budget.spent + spent, held=budget.held + held)
        self._budgets[(budget.user_id, budget.session_id)] = moved
        return moved

    def _user_budget(self, user_id: str, limit: int | None = None) -> UserBudgetRow | None:
        # Derived, never stored: the user's totals are the sums of their sessions' budgets.
        limit = self._user_limits.get(user_id) if limit is None else limit
        if limit is None:
            return None
        mine = [b for (u, _), b in self._budgets.items() if u == user_id]
        return UserBudgetRow(user_id, limit, sum(b.spent for b in mine), sum(b.held for b in mine))

    def _write(self, entry: LedgerEntry) -> None:
        self._ledger.setdefault((entry.user_id, entry.session_id), []).append(entry)
        self._entries[entry.entry_id] = entry
        if entry.idempotency_key is not None:
            key = (entry.user_id, entry.session_id, entry.idempotency_key)
            self._idempotency[key] = entry.entry_id

    def _outcome(self, status: BudgetStatus, entry: LedgerEntry | None, owner: _Owner,
                 hold_id: str | None = None) -> BudgetOutcome:  # fmt: skip
        return BudgetOutcome(status, entry, self._budgets.get(owner),
                             self._user_budget(owner[0]), hold_id)  # fmt: skip

    async def get_budget(
        self, user_id: str, session_id: str, *, default_limit: int, currency: str
    ) -> BudgetRow:
        return self._locked(lambda now: self._budget((user_id, session_id), default_limit,
                                                     currency, now))  # fmt: skip

    async def set_budget(
        self, user_id: str, session_id: str, *, limit: int, currency: str
    ) -> BudgetRow | None:
        def op(now: float) -> BudgetRow | None:
            budget = self._budget((user_id, session_id), limit, currency, now)
            if limit < budget.spent + budget.held:
                return None
            self._budgets[(user_id, session_id)] = replace(budget, limit=limit, currency=currency)
            return self._budgets[(user_id, session_id)]

        return self._locked(op)

    async def get_user_budget(self, user_id: str) -> UserBudgetRow | None:
        return self._locked(lambda now: self._user_budget(user_id))

    async def set_user_budget(self, user_id: str, limit: int | None) -> UserBudgetRow | None:
        def op(now: float) -> UserBudgetRow | None:
            if limit is None:
                self._user_limits.pop(user_id, None)
                return None
            wanted = self._user_budget(user_id, limit)
            assert wanted is not None
            if limit < wanted.spent + wanted.held:
                return None
            self._user_limits[user_id] = limit
            return wanted

        return self._locked(op)

    async def charge(self, request: ChargeRequest) -> BudgetOutcome:
        return self._locked(lambda now: self._spend(request, now, hold=False))

    async def reserve(self, request: ChargeRequest) -> BudgetOutcome:
        return self._locked(lambda now: self._spend(request, now, hold=True))

    def _spend(self, r: ChargeRequest, now: float, *, hold: bool) -> BudgetOutcome:
        owner = (r.user_id, r.session_id)
        if not self._owner_live(StateScope("session", r.user_id, r.session_id), now):
            return BudgetOutcome("closed", None, None)
        budget = self._budget(owner, r.default_limit, r.currency, now)
        if r.idempotency_key is not None:
            first = self._idempotency.get((r.user_id, r.session_id, r.idempotency_key))
            if first is not None:
                entry = self._entries[first]
                status: BudgetStatus = "replayed" if entry.amount == r.amount else "mismatch"
                return self._outcome(status, entry, owner)
        refusal = charge_refusal(budget, self._user_budget(r.user_id), r.amount)
        if refusal is not None:  # a refusal stores nothing, not even a fresh budget
            return BudgetOutcome(refusal, None, budget, self._user_budget(r.user_id))
        if hold:
            self._holds.setdefault(owner, {})[r.entry_id] = _Hold(r.amount, now + r.hold_ttl)
            self._move(budget, held=r.amount)
            return self._outcome("held", None, owner, r.entry_id)
        entry = LedgerEntry(r.entry_id, r.user_id, r.session_id, "charge", r.amount,
                            r.idempotency_key, r.description, now)  # fmt: skip
        self._write(entry)
        self._move(budget, spent=r.amount)
        return self._outcome("charged", entry, owner)

    async def refund(
        self, user_id: str, session_id: str, charge_id: str, refund_id: str
    ) -> BudgetOutcome:
        def op(now: float) -> BudgetOutcome:
            owner = (user_id, session_id)
            charge = self._entries.get(charge_id)
            if charge is None or (charge.user_id, charge.session_id) != owner:
                return BudgetOutcome("unknown", None, None)
            self._budgets[owner] = self._expire_holds(owner, self._budgets[owner], now)
            if charge.kind != "charge" or charge_id in self._refunded:
                return self._outcome("already", charge, owner)
            entry = LedgerEntry(refund_id, user_id, session_id, "refund", -charge.amount, None,
                                f"refund of {charge_id}", now, refund_of=charge_id)  # fmt: skip
            self._refunded.add(charge_id)
            self._write(entry)
            self._move(self._budgets[owner], spent=-charge.amount)
            return self._outcome("refunded", entry, owner)

        return self._locked(op)

    async def capture(
        self, user_id: str, session_id: str, hold_id: str, actual: int, entry_id: str,
        description: str,
    ) -> BudgetOutcome:  # fmt: skip
        def op(now: float) -> BudgetOutcome:
            owner = (user_id, session_id)
            budget = self._budget(owner, 0, "", now) if owner in self._budgets else None
            hold = self._holds.get(owner, {}).get(hold_id)
            if budget is None or hold is None:
                return BudgetOutcome("unknown", None, None)
            if actual > hold.amount:
                return self._outcome("too_much", None, owner, hold_id)
            del self._holds[owner][hold_id]
            entry = LedgerEntry(entry_id, user_id, session_id, "charge", actual, None,
                                description, now)  # fmt: skip
            if actual > 0:
                self._write(entry)
            self._move(budget, spent=actual, held=-hold.amount)
            return self._outcome("captured", entry if actual > 0 else None, owner, hold_id)

        return self._locked(op)

    async def release(self, user_id: str, session_id: str, hold_id: str) -> BudgetOutcome:
        def op(now: float) -> BudgetOutcome:
            owner = (user_id, session_id)
            budget = self._budget(owner, 0, "", now) if owner in self._budgets else None
            hold = self._holds.get(owner, {}).pop(hold_id, None)
            if budget is None or hold is None:
                return BudgetOutcome("unknown", None, None)
            self._move(budget, held=-hold.amount)
            return self._outcome("released", None, owner, hold_id)

        return self._locked(op)

    async def list_charges(
        self, user_id: str, session_id: str, *, after: str | None, limit: int
    ) -> list[LedgerEntry]:
        def op(now: float) -> list[LedgerEntry]:
            entries = self._ledger.get((user_id, session_id), [])
            if after is not None:
                ids = [e.entry_id for e in entries]
                if after not in ids:
                    return []
                entries = entries[ids.index(after) + 1 :]
            return entries[:limit]

        return self._locked(op)

    async def sweep_holds(self, limit: int) -> int:
        def op(now: float) -> int:
            swept = 0
            for owner, holds in list(self._holds.items()):
                expired = [h for h, hold in holds.items() if hold.expires_at <= now]
                for hold_id in expired[: limit - swept]:
                    self._move(self._budgets[owner], held=-holds.pop(hold_id).amount)
                    swept += 1
            return swept

        return self._locked(op)

    async def verify_ledger(self) -> list[LedgerProblem]:
        def op(now: float) -> list[LedgerProblem]:
            problems = []
            for (user, sid), budget in self._budgets.items():
                spent = sum(e.amount for e in self._ledger.get((user, sid), []))
                held = sum(h.amount for h in self._holds.get((user, sid), {}).values())
                problems += _compare(user, sid, budget.spent, spent, budget.held, held)
            return problems

        return self._locked(op)


def _compare(user: str, sid: str | None, spent: int, ledger: int, held: int,
             holds: int) -> list[LedgerProblem]:  # fmt: skip
    found = []
    if spent != ledger:
        found.append(LedgerProblem(user, sid, "spent", spent, ledger))
    if held != holds:
        found.append(LedgerProblem(user, sid, "held", held, holds))
    return found
