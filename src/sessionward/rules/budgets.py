"""The charge rule every budget backend applies."""

from __future__ import annotations

from typing import Literal

from ..stores.records import BudgetRow, UserBudgetRow


def charge_refusal(
    budget: BudgetRow, user: UserBudgetRow | None, amount: int
) -> Literal["exceeded", "user_exceeded"] | None:
    """Why ``amount`` may not be spent now (the rule every backend applies), or ``None``."""
    if amount > budget.limit - budget.spent - budget.held:
        return "exceeded"
    if user is not None and amount > user.limit - user.spent - user.held:
        return "user_exceeded"
    return None
