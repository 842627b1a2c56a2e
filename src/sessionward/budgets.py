"""Per-session budgets: atomic, idempotent spending with a ledger.

    charge = await ward.budgets.charge(session, 250, idempotency_key="order-17",
                                      description="blood panel")
    charge.remaining          # what the session may still spend
    await ward.budgets.refund(session, charge.charge_id)

Amounts are integers in minor units (cents), from 1 to 2**53. Each session starts with
``budget_default`` (settable per session); an optional per-user limit caps all the user's
sessions together and is checked in the same atomic step. A charge either records a ledger
line and moves the totals, or charges nothing and raises :class:`BudgetExceeded`. The same
idempotency key again returns the first charge (``replayed``) and charges nothing; with
another amount it raises :class:`IdempotencyMismatch`. ``reserve`` holds an amount against
the budget until ``capture`` (charge what it really cost) or ``release``; holds expire.
The ledger is the source of truth: ``verify()`` proves the totals equal it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .config import Settings
from .errors import (
    AlreadyRefunded,
    BudgetExceeded,
    IdempotencyMismatch,
    InvalidArgument,
    UnknownCharge,
)
from .sessions import Session, judge
from .stores.protocols import BudgetStore, SessionStore
from .stores.records import (
    BudgetOutcome,
    BudgetRow,
    ById,
    ChargeRequest,
    LedgerEntry,
    LedgerProblem,
    UserBudgetRow,
)
from .tokens import new_public_id

MAX_AMOUNT = 2**53  # exact in every store, Lua's doubles included
MAX_KEY, MAX_DESCRIPTION = 255, 500


class _Store(BudgetStore, SessionStore, Protocol):
    pass


@dataclass(frozen=True, slots=True)
class Budget:
    limit: int
    spent: int
    held: int
    remaining: int
    currency: str
    user_limit: int | None = None
    user_remaining: int | None = None


@dataclass(frozen=True, slots=True)
class Charge:
    charge_id: str
    amount: int
    spent: int
    remaining: int
    replayed: bool
    entry: LedgerEntry


@dataclass(frozen=True, slots=True)
class Hold:
    hold_id: str
    amount: int
    remaining: int


def check_amount(amount: int, what: str = "amount", *, zero: bool = False) -> int:
    if type(amount) is not int or not (0 if zero else 1) <= amount <= MAX_AMOUNT:
        low = 0 if zero else 1
        raise InvalidArgument(f"{what} must be an integer from {low} to 2**53 (minor units)")
    return amount


def _text(value: str | None, what: str, limit: int, *, empty: bool) -> str:
    if value is None or not isinstance(value, str) or len(value) > limit:
        raise InvalidArgument(f"{what} must be a string of at most {limit} characters")
    if not empty and not value.strip():
        raise InvalidArgument(f"{what} must not be empty")
    if any(ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise InvalidArgument(f"{what} must not hold control characters or lone surrogates")
    return value


class Budgets:
    def __init__(self, store: _Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings

    async def get(self, session: Session) -> Budget:
        s = self._settings
        row = await self._store.get_budget(session.user_id, session.session_id,
                                           default_limit=s.budget_default,
                                           currency=s.budget_currency)  # fmt: skip
        return _budget(row, await self._store.get_user_budget(session.user_id))

    async def set_limit(self, session: Session, limit: int) -> Budget:
        """Set the session's limit; refused below what is spent and held."""
        row = await self._store.set_budget(session.user_id, session.session_id,
                                           limit=check_amount(limit, "limit", zero=True),
                                           currency=self._settings.budget_currency)  # fmt: skip
        if row is None:
            raise InvalidArgument("the limit is below what the session has spent and holds")
        return _budget(row, await self._store.get_user_budget(session.user_id))

    async def set_user_limit(self, user_id: str, limit: int | None) -> UserBudgetRow | None:
        """Cap all of a user's sessions together (``None``: no cap)."""
        checked = None if limit is None else check_amount(limit, "limit", zero=True)
        row = await self._store.set_user_budget(user_id, checked)
        if checked is not None and row is None:
            raise InvalidArgument("the limit is below what the user's sessions spent and hold")
        return row

    async def charge(
        self, session: Session, amount: int, idempotency_key: str, description: str = ""
    ) -> Charge:
        key = _text(idempotency_key, "idempotency_key", MAX_KEY, empty=False)
        request = self._request(session, amount, key, description, new_public_id())
        done = await self._store.charge(request)
        await self._raise_on_refusal(session, done, amount)
        assert done.entry is not None and done.budget is not None
        if done.status == "mismatch":
            raise IdempotencyMismatch(
                f"idempotency key {idempotency_key!r} was used with amount {done.entry.amount}"
            )
        return _charge(done.entry, done.budget, replayed=done.status == "replayed")

    async def refund(self, session: Session, charge_id: str) -> Charge:
        """Refund a charge (once): a negative ledger line of the same amount."""
        done = await self._store.refund(session.user_id, session.session_id,
                                        _text(charge_id, "charge_id", 64, empty=False),
                                        new_public_id())  # fmt: skip
        if done.status == "unknown":
            raise UnknownCharge("no such charge in this session")
        if done.status == "already":
            raise AlreadyRefunded("the charge was refunded already")
        assert done.entry is not None and done.budget is not None
        return _charge(done.entry, done.budget, replayed=False)

    async def reserve(self, session: Session, amount: int, *, ttl: float | None = None) -> Hold:
        """Hold ``amount`` against the budget until captured, released or expired."""
        hold_ttl = ttl if ttl is not None else self._settings.budget_hold_ttl
        if not 0 < hold_ttl <= 30 * 86400:
            raise InvalidArgument("a hold lives between 0 and 30 days")
        request = self._request(session, amount, None, "hold", new_public_id(), hold_ttl)
        done = await self._store.reserve(request)
        await self._raise_on_refusal(session, done, amount)
        assert done.hold_id is not None and done.budget is not None
        return Hold(done.hold_id, amount, done.budget.remaining)

    async def capture(
        self, session: Session, hold_id: str, actual: int, description: str = ""
    ) -> Charge | None:
        """Charge what the held work really cost (at most the hold) and release the hold;
        ``None`` when ``actual`` is 0 (nothing to charge)."""
        done = await self._store.capture(
            session.user_id, session.session_id, _text(hold_id, "hold_id", 64, empty=False),
            check_amount(actual, "actual", zero=True), new_public_id(),
            _text(description, "description", MAX_DESCRIPTION, empty=True),
        )  # fmt: skip
        if done.status == "unknown":
            raise UnknownCharge("no such hold in this session (or it expired)")
        if done.status == "too_much":
            raise InvalidArgument("a capture may not exceed its hold")
        assert done.budget is not None
        return None if done.entry is None else _charge(done.entry, done.budget, replayed=False)

    async def release(self, session: Session, hold_id: str) -> None:
        done = await self._store.release(session.user_id, session.session_id,
                                         _text(hold_id, "hold_id", 64, empty=False))  # fmt: skip
        if done.status == "unknown":
            raise UnknownCharge("no such hold in this session (or it expired)")

    async def charges(
        self, session: Session, *, after: str | None = None, limit: int = 100
    ) -> list[LedgerEntry]:
        """The session's ledger, oldest first."""
        return await self._store.list_charges(session.user_id, session.session_id, after=after,
                                              limit=min(max(limit, 1), 1000))  # fmt: skip

    async def verify(self) -> list[LedgerProblem]:
        """Budgets whose totals disagree with their ledger (empty: the books balance)."""
        return await self._store.verify_ledger()

    async def sweep(self) -> int:
        return await self._store.sweep_holds(self._settings.sweep_batch_size)

    def _request(self, session: Session, amount: int, key: str | None, description: str,
                 entry_id: str, hold_ttl: float = 0.0) -> ChargeRequest:  # fmt: skip
        return ChargeRequest(
            user_id=session.user_id,
            session_id=session.session_id,
            amount=check_amount(amount),
            entry_id=entry_id,
            idempotency_key=key,
            description=_text(description, "description", MAX_DESCRIPTION, empty=True),
            default_limit=self._settings.budget_default,
            currency=self._settings.budget_currency,
            hold_ttl=hold_ttl,
        )

    async def _raise_on_refusal(self, session: Session, done: BudgetOutcome, amount: int) -> None:
        if done.status == "closed":
            found = await self._store.find_session(
                ById(session.user_id, session.session_id), touch_interval=None
            )
            judge(found.row, found.now)
            judge(None, found.now)
        if done.status == "exceeded":
            assert done.budget is not None
            raise BudgetExceeded(done.budget.remaining)
        if done.status == "user_exceeded":
            assert done.user_budget is not None
            raise BudgetExceeded(done.user_budget.remaining, scope="user")


def _budget(row: BudgetRow, user: UserBudgetRow | None) -> Budget:
    return Budget(row.limit, row.spent, row.held, row.remaining, row.currency,
                  None if user is None else user.limit,
                  None if user is None else user.remaining)  # fmt: skip


def _charge(entry: LedgerEntry, budget: BudgetRow, *, replayed: bool) -> Charge:
    return Charge(entry.entry_id, entry.amount, budget.spent, budget.remaining, replayed, entry)
