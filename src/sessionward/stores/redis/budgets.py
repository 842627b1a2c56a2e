"""The Redis store's budgets, ledgers and holds (a base of :class:`~.store.RedisStore`).

Every operation is one Lua script on one user's keys (layout in :mod:`.keys`, the
rules and formats in ``lua/budget_prelude.lua``), so it is atomic against every other client:
``charge`` checks that the session is live, releases its expired holds, looks up the
idempotency key, applies ``rules.budgets.charge_refusal`` to the session's budget and then to the
user's cap, and writes the ledger line and the totals together, or nothing.

The user's spent and held are never stored: the scripts that need them sum the user's session
budgets, found through the user's budget index (``P:{u:U}:bidx``, in the user's slot).

Round trips: one ``EVALSHA`` for every operation on a session or a user. ``sweep_holds`` and
``verify_ledger`` SCAN the keyspace (a bounded number of pages) and run one script per user
in each page. A script that moves money (``charge``, ``reserve``, ``refund``, ``capture``,
``release``, ``sweep_holds``) is never sent twice: it may have applied before its reply was
lost. The rest only read, or set a value absolutely, so repeating them is harmless.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import Any, cast

from ..records import (
    BudgetOutcome,
    BudgetRow,
    BudgetStatus,
    ChargeRequest,
    LedgerEntry,
    LedgerProblem,
    UserBudgetRow,
)
from .connection import RedisConnection
from .keys import Owner, encode_id, optional, time_arg

# Lua's numbers are doubles: beyond this they would be rounded, so such amounts are refused.
EXACT = 2**53
LIMB = 10**8  # the base of the two limbs in which the scripts return sums
# A sweep or a verification looks at no more than this many SCAN pages.
_PAGES, _PAGE = 1000, 1000


def amount_arg(value: int) -> str:
    if not -EXACT <= value <= EXACT:
        raise ValueError(f"the redis store keeps amounts exact up to 2**53, not {value}")
    return str(int(value))


def budget_row(owner: Owner, reply: Sequence[str]) -> BudgetRow:
    limit, spent, held, currency = reply
    return BudgetRow(owner[0], owner[1], int(limit), int(spent), int(held), currency)


def limbs(high: str, low: str) -> int:
    return int(high) * LIMB + int(low)


def user_row(user_id: str, reply: Sequence[str] | None) -> UserBudgetRow | None:
    if reply is None:
        return None
    cap, spent_high, spent_low, held_high, held_low = reply
    spent, held = limbs(spent_high, spent_low), limbs(held_high, held_low)
    return UserBudgetRow(user_id, int(cap), spent, held)


def ledger_entry(owner: Owner, reply: Sequence[Any]) -> LedgerEntry:
    entry_id, kind, amount, key, description, created_at, refund_of = reply
    return LedgerEntry(entry_id, owner[0], owner[1], kind, int(amount), key, description,
                       float(created_at), refund_of)  # fmt: skip


def outcome(owner: Owner, reply: Sequence[Any]) -> BudgetOutcome:
    """A ledger script's reply: ``{status, entry, budget, user, hold id}``."""
    status, entry, budget, user, hold_id = reply
    return BudgetOutcome(
        status=cast(BudgetStatus, status),
        entry=None if entry is None else ledger_entry(owner, entry),
        budget=None if budget is None else budget_row(owner, budget),
        user_budget=user_row(owner[0], user),
        hold_id=hold_id,
    )


class RedisBudgets(RedisConnection):
    async def _ledger(self, name: str, owner: Owner, args: list[str]) -> BudgetOutcome:
        """Run a script that moves money on the session's keys (``args`` after its base and
        member). Never repeated: it may have applied before its reply was lost (a keyed
        charge would come back "replayed"; anything else would count twice)."""
        keys = self._keys.budget(*owner)
        args = [self._now(), self._keys.user(owner[0]), encode_id(owner[1]), *args]
        return outcome(owner, await self._script(name, keys, args, idempotent=False))

    async def get_budget(
        self, user_id: str, session_id: str, *, default_limit: int, currency: str
    ) -> BudgetRow:
        keys = self._keys.budget(user_id, session_id)
        args = [self._now(), amount_arg(default_limit), currency]
        # releasing expired holds twice releases nothing more: repeatable
        reply = await self._script("budget_get", [keys[0], keys[3]], args)
        return budget_row((user_id, session_id), reply)

    async def set_budget(
        self, user_id: str, session_id: str, *, limit: int, currency: str
    ) -> BudgetRow | None:
        keys = self._keys.budget(user_id, session_id)
        args = [self._now(), self._keys.user(user_id), encode_id(session_id)]
        # sets a value, not a change to one: a repetition finds it set and answers the same
        reply = await self._script("budget_set", keys[:6], [*args, amount_arg(limit), currency])
        return None if reply is None else budget_row((user_id, session_id), reply)

    async def get_user_budget(self, user_id: str) -> UserBudgetRow | None:
        return await self._user_budget(user_id, "")

    async def set_user_budget(self, user_id: str, limit: int | None) -> UserBudgetRow | None:
        return await self._user_budget(user_id, "-" if limit is None else f"+{amount_arg(limit)}")

    async def _user_budget(self, user_id: str, change: str) -> UserBudgetRow | None:
        args = [self._keys.user(user_id), change]
        reply = await self._script("user_budget", self._keys.user_budget(user_id), args)
        return user_row(user_id, reply)

    async def charge(self, request: ChargeRequest) -> BudgetOutcome:
        return await self._spend(request, hold=False)

    async def reserve(self, request: ChargeRequest) -> BudgetOutcome:
        return await self._spend(request, hold=True)

    async def _spend(self, r: ChargeRequest, *, hold: bool) -> BudgetOutcome:
        args = [r.user_id, amount_arg(r.amount), r.entry_id, optional(r.idempotency_key),
                r.description, amount_arg(r.default_limit), r.currency, "1" if hold else "0",
                time_arg(r.hold_ttl)]  # fmt: skip
        return await self._ledger("budget_spend", (r.user_id, r.session_id), args)

    async def refund(
        self, user_id: str, session_id: str, charge_id: str, refund_id: str
    ) -> BudgetOutcome:
        return await self._ledger("budget_refund", (user_id, session_id), [charge_id, refund_id])

    async def capture(
        self, user_id: str, session_id: str, hold_id: str, actual: int, entry_id: str,
        description: str,
    ) -> BudgetOutcome:  # fmt: skip
        args = [hold_id, amount_arg(actual), entry_id, description]
        return await self._ledger("budget_capture", (user_id, session_id), args)

    async def release(self, user_id: str, session_id: str, hold_id: str) -> BudgetOutcome:
        return await self._ledger("budget_release", (user_id, session_id), [hold_id])

    async def list_charges(
        self, user_id: str, session_id: str, *, after: str | None, limit: int
    ) -> list[LedgerEntry]:
        if limit <= 0:
            return []
        keys = self._keys.budget(user_id, session_id)
        args = [optional(after), str(limit)]
        reply = await self._script("ledger_list", [keys[0], keys[2]], args)
        return [ledger_entry((user_id, session_id), entry) for entry in reply]

    # across every user: SCAN

    async def _by_user(self, kind: str) -> AsyncGenerator[list[str], None]:
        """Every session key of one kind, one user's at a time (SCAN may split a user over
        pages, and may return a key twice: it is yielded once)."""
        cursor, pattern, seen = 0, self._keys.budget_pattern(kind), set[str]()
        for _ in range(_PAGES):
            cursor, found = await self._scan(cursor, pattern)
            users: defaultdict[str, list[str]] = defaultdict(list)
            for key in sorted(set(found) - seen):
                owner = self._keys.owner_of(key)
                if owner is not None:
                    users[owner[0]].append(key)
            seen.update(found)
            for keys in users.values():
                yield keys
            if cursor == 0:
                return

    async def _scan(self, start: int, pattern: str) -> tuple[int, list[str]]:
        return await self._scan_page(start, pattern, _PAGE)

    async def sweep_holds(self, limit: int) -> int:
        swept = 0
        async with aclosing(self._by_user("h")) as users:
            async for keys in users:
                args = [self._now(), str(limit - swept)]
                # not repeated: a repetition would count again what the first one released
                swept += int(await self._script("holds_sweep", keys, args, idempotent=False))
                if swept >= limit:
                    break
        return swept

    async def verify_ledger(self) -> list[LedgerProblem]:
        """Problems in SCAN order (the reference stores' order is their insertion order)."""
        problems: list[LedgerProblem] = []
        async for keys in self._by_user("b"):
            replies = await self._script("ledger_verify", keys, [])
            for key, reply in zip(keys, replies, strict=True):
                owner = self._keys.owner_of(key)
                if reply is not None and owner is not None:
                    problems += _compare(owner, reply)
        return problems


def _compare(owner: Owner, reply: Sequence[str]) -> list[LedgerProblem]:
    spent, held = int(reply[0]), int(reply[1])
    ledger, holds = limbs(reply[2], reply[3]), limbs(reply[4], reply[5])
    found = []
    if spent != ledger:
        found.append(LedgerProblem(owner[0], owner[1], "spent", spent, ledger))
    if held != holds:
        found.append(LedgerProblem(owner[0], owner[1], "held", held, holds))
    return found
