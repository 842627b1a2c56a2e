"""The auth router's request and response bodies (docs/http-api.md, Accounts and Sessions).

Requests are strict (no coercion, no unknown fields). A new account's username and password
carry the rules of :mod:`sessionward.users` in the OpenAPI schema, so a request the schema
accepts is one the server accepts.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..users import MAX_PASSWORD, MAX_USERNAME, MIN_PASSWORD, MIN_USERNAME, USERNAME_PATTERN


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class NewAccount(Strict):
    username: str = Field(min_length=MIN_USERNAME, max_length=MAX_USERNAME,
                          pattern=USERNAME_PATTERN)  # fmt: skip
    password: str = Field(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)


class Credentials(Strict):
    """Login: any name may be tried (an impossible one is a 401 like any unknown one)."""

    username: str = Field(max_length=256)
    password: str = Field(max_length=4096)


class RefreshRequest(Strict):
    refresh_token: str = Field(max_length=1024)


class Registered(BaseModel):
    user_id: str
    username: str


class AccessToken(BaseModel):
    """Tokens in cookie mode: the refresh token travels only in its HttpOnly cookie."""

    access_token: str
    token_type: str
    expires_in: int
    session_id: str


class Tokens(AccessToken):
    refresh_token: str


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
