"""Request and response bodies. Requests are strict: no coercion, no unknown fields."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..clock import iso_utc
from ..fastapi.models import ErrorResponse, Strict

__all__ = ["ErrorResponse", "Strict"]  # shared with the auth router


class StateWrite(Strict):
    data: Any


class ChargeIn(Strict):
    amount: int = Field(ge=1, le=2**53)
    idempotency_key: str = Field(min_length=1, max_length=255)
    description: str = Field(default="", max_length=500)


class Document(BaseModel):
    name: str
    data: Any
    version: int


class Written(BaseModel):
    name: str
    version: int


class Names(BaseModel):
    names: list[str]


class BudgetOut(BaseModel):
    limit: int
    spent: int
    remaining: int
    currency: str


class ChargeOut(BaseModel):
    charge_id: str
    amount: int
    spent: int
    remaining: int


class LedgerLine(BaseModel):
    charge_id: str
    amount: int
    description: str
    idempotency_key: str | None
    created_at: str


class ChargeList(BaseModel):
    charges: list[LedgerLine]


class JobIn(Strict):
    kind: str = Field(min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)


class JobAccepted(BaseModel):
    job_id: str
    status: str


class JobOut(BaseModel):
    job_id: str
    kind: str
    status: str
    progress: float
    message: str
    result: Any
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None


class JobList(BaseModel):
    jobs: list[JobOut]


class JobKindOut(BaseModel):
    kind: str
    description: str
    params_schema: dict[str, Any]


class JobKindList(BaseModel):
    kinds: list[JobKindOut]


class Me(BaseModel):
    user_id: str
    username: str
    roles: list[str]
    session_id: str


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    store: str
    latency_ms: float


iso = iso_utc  # the API shows every time this way
