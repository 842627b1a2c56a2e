"""Request and response bodies. Requests are strict: no coercion, no unknown fields."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class Credentials(Strict):
    username: str = Field(max_length=256)
    password: str = Field(max_length=4096)


class RefreshRequest(Strict):
    refresh_token: str = Field(max_length=1024)


class StateWrite(Strict):
    data: Any


class ChargeIn(Strict):
    amount: int = Field(ge=1, le=2**53)
    idempotency_key: str = Field(min_length=1, max_length=255)
    description: str = Field(default="", max_length=500)


class Registered(BaseModel):
    user_id: str
    username: str


class Tokens(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    session_id: str


class SessionOut(BaseModel):
    session_id: str
    created_at: str
    last_seen_at: str
    expires_at: str
    ip: str | None
    user_agent: str | None
    current: bool


class SessionList(BaseModel):
    sessions: list[SessionOut]


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


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    store: str
    latency_ms: float


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


def iso(seconds: float) -> str:
    """ISO 8601 in UTC, e.g. ``2026-11-21T06:48:02.123456Z``."""
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
