from __future__ import annotations

from fastapi import APIRouter, Response

from ..body import StrictJSONRoute
from ..deps import Authenticated, WardDep
from ..models import (
    BudgetOut,
    ChargeIn,
    ChargeList,
    ChargeOut,
    ErrorResponse,
    LedgerLine,
    iso,
)

router = APIRouter(prefix="/v1/budget", route_class=StrictJSONRoute, tags=["budget"])


@router.get("", response_model=BudgetOut)
async def get_budget(principal: Authenticated, ward: WardDep) -> BudgetOut:
    """The session's budget, in minor units."""
    budget = await ward.budgets.get(principal.session)
    return BudgetOut(limit=budget.limit, spent=budget.spent, remaining=budget.remaining,
                     currency=budget.currency)  # fmt: skip


@router.post("/charges", status_code=201, response_model=ChargeOut, responses={
    200: {"model": ChargeOut, "description": "a replayed charge"},
    402: {"model": ErrorResponse, "description": "budget_exceeded"},
})  # fmt: skip
async def charge(
    body: ChargeIn, principal: Authenticated, ward: WardDep, response: Response
) -> ChargeOut:
    """Charge the session. 402 ``budget_exceeded`` (nothing charged); the same
    ``idempotency_key`` again returns the first charge with 200; with another amount, 422
    ``idempotency_mismatch``."""
    done = await ward.budgets.charge(principal.session, body.amount, body.idempotency_key,
                                    body.description)  # fmt: skip
    if done.replayed:
        response.status_code = 200
    return ChargeOut(charge_id=done.charge_id, amount=done.amount, spent=done.spent,
                     remaining=done.remaining)  # fmt: skip


@router.get("/charges", response_model=ChargeList)
async def list_charges(principal: Authenticated, ward: WardDep) -> ChargeList:
    """The session's ledger, oldest first."""
    lines = []
    after: str | None = None
    while page := await ward.budgets.charges(principal.session, after=after, limit=1000):
        lines += page
        after = page[-1].entry_id
    return ChargeList(charges=[
        LedgerLine(charge_id=e.entry_id, amount=e.amount, description=e.description,
                   idempotency_key=e.idempotency_key, created_at=iso(e.created_at))
        for e in lines
    ])  # fmt: skip
