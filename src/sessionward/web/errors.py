"""The one table from sessionward's exceptions to the problem shape of docs/http-api.md.

    {"error": {"code": "rate_limited", "message": "...", "retry_after": 3}}

Shared by the reference service and :mod:`sessionward.fastapi`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.responses import JSONResponse

from .. import errors as e
from .problem import error_response


@dataclass
class ApiError(Exception):
    """An answer the service gives on purpose."""

    status: int
    code: str
    message: str
    fields: list[dict[str, str]] | None = None
    retry_after: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)


def invalid(field_name: str, message: str) -> ApiError:
    return ApiError(422, "invalid_request", "The request is not valid.",
                    [{"field": field_name, "message": message}])  # fmt: skip


def invalid_fields(fields: list[dict[str, str]]) -> ApiError:
    return ApiError(422, "invalid_request", "The request is not valid.", fields)


def unauthorized(message: str = "A valid bearer token is required.") -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


NOT_FOUND = ApiError(404, "not_found", "Not found.")

Rule = Callable[[Exception], ApiError]


def _retry(status: int, code: str, message: str) -> Rule:
    def rule(exc: Exception) -> ApiError:
        return ApiError(status, code, message, retry_after=getattr(exc, "retry_after", 1.0))

    return rule


def _fixed(status: int, code: str, message: str) -> Rule:
    return lambda exc: ApiError(status, code, message)


# Most specific first: the first class the exception is an instance of wins.
TABLE: list[tuple[type[Exception], Rule]] = [
    (e.UsernameTaken, _fixed(409, "username_taken", "That username is taken.")),
    (e.InvalidCredentials, _fixed(401, "invalid_credentials", "Invalid username or password.")),
    (e.AccountLocked, _retry(429, "locked_out", "Too many failed logins; try again later.")),
    (e.RateLimited, _retry(429, "rate_limited", "Too many requests.")),
    (e.CapacityExceeded, _retry(503, "over_capacity", "The service is at capacity.")),
    (
        e.RefreshTokenReused,
        _fixed(401, "token_reused", "That refresh token was already used; the session is revoked."),
    ),
    (e.InvalidToken, _fixed(401, "invalid_token", "The token is not valid.")),
    (e.SessionError, lambda exc: unauthorized("The session is not active.")),
    (e.WriteConflict, _fixed(412, "version_conflict", "The document has changed.")),
    (e.StateTooLarge, _fixed(413, "too_large", "The document is too large.")),
    (e.InvalidStateName, lambda exc: invalid("name", str(exc))),
    (e.InvalidJobParams, lambda exc: invalid_fields(getattr(exc, "fields", []))),
    (e.UnknownJobKind, _fixed(404, "unknown_kind", "There is no job kind of that name.")),
    (e.JobLimitExceeded, _fixed(429, "job_limit", "Too many of your jobs are waiting already.")),
    (e.UnknownJob, _fixed(404, "not_found", "Not found.")),
    (e.InvalidArgument, lambda exc: invalid("body", str(exc))),
    (
        e.BudgetExceeded,
        lambda exc: ApiError(
            402,
            "budget_exceeded",
            "The charge exceeds the remaining budget; nothing was charged.",
            extra={"remaining": getattr(exc, "remaining", 0)},
        ),
    ),
    (
        e.IdempotencyMismatch,
        _fixed(422, "idempotency_mismatch", "That idempotency key was used with another amount."),
    ),
    (e.UnknownCharge, _fixed(404, "not_found", "Not found.")),
    (e.AlreadyRefunded, _fixed(409, "already_refunded", "The charge was refunded already.")),
    (e.StorageUnavailable, _retry(503, "store_unavailable", "The store is unavailable.")),
    (e.StorageError, _fixed(503, "store_error", "The store failed; try again.")),
]


def to_api_error(exc: Exception) -> ApiError:
    for cls, rule in TABLE:
        if isinstance(exc, cls):
            return rule(exc)
    raise LookupError(type(exc).__name__)


def respond(error: ApiError) -> JSONResponse:
    headers = error.headers
    if error.status == 401 and "WWW-Authenticate" not in headers:
        headers = {**headers, "WWW-Authenticate": "Bearer"}  # RFC 9110: every 401 has one
    return error_response(
        error.status,
        error.code,
        error.message,
        retry_after=error.retry_after,
        fields=error.fields,
        headers=headers,
        extra=error.extra,
    )
