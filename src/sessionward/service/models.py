"""Request and response bodies. Requests are strict: no coercion, no unknown fields."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..clock import iso_utc
from ..users import MAX_PASSWORD, MIN_PASSWORD, USERNAME


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class Credentials(Strict):
    username: str = Field(max_length=256)
    password: str = Field(max_length=4096)


class Registration(Strict):
    """Credentials of a new account. The schema states the rules ``Users.create`` applies
    (so a request valid by the schema is accepted); the check and its message stay there."""

    username: str = Field(
        max_length=256, json_schema_extra={"pattern": f"^{USERNAME.pattern}$", "maxLength": 64}
    )
    password: str = Field(
        max_length=4096, json_schema_extra={"minLength": MIN_PASSWORD, "maxLength": MAX_PASSWORD}
    )


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


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    store: str
    latency_ms: float


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """The error shape of docs/http-api.md; some codes add fields of their own."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str
    retry_after: int | None = Field(default=None, ge=0, description="429 and 503: seconds")
    fields: list[FieldError] | None = Field(default=None, description="422 invalid_request")


class ErrorResponse(BaseModel):
    error: ErrorBody


iso = iso_utc  # the API shows every time this way
