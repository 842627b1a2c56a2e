"""One table from exceptions to the HTTP error shape of docs/http-api.md.

    {"error": {"code": "rate_limited", "message": "...", "retry_after": 3}}

Every handler here answers with that shape; nothing, however malformed the request, turns
into a traceback. Unexpected exceptions are logged with their traceback and answered 500
``internal_error`` (a bug, never a reaction to input).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from .. import errors as e
from ..web.problem import error_response

log = logging.getLogger("sessionward.service")


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
    return error_response(
        error.status,
        error.code,
        error.message,
        retry_after=error.retry_after,
        fields=error.fields,
        headers=error.headers,
        extra=error.extra,
    )


def install(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return respond(exc)

    async def ours(request: Request, exc: Exception) -> JSONResponse:
        try:
            return respond(to_api_error(exc))
        except LookupError:
            return await crash(request, exc)

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return respond(ApiError(422, "invalid_request", "The request is not valid.",
                                [_field(err) for err in exc.errors()][:20]))  # fmt: skip

    async def http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "")
            return respond(ApiError(405, "method_not_allowed", "Method not allowed.",
                                    headers={"Allow": allow} if allow else {}))  # fmt: skip
        if exc.status_code == 404:
            return respond(NOT_FOUND)
        return respond(ApiError(exc.status_code, "http_error", str(exc.detail)))

    async def crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return respond(ApiError(500, "internal_error", "Something went wrong on our side."))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(e.SessionwardError, ours)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http)
    app.add_exception_handler(Exception, crash)


def _field(error: Any) -> dict[str, str]:
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    name = ".".join(loc) if loc else "body"
    if error.get("loc", ("",))[0] == "header":
        name = "-".join(p.capitalize() for p in loc[1:] or ["header"]) if loc else "header"
    return {"field": name, "message": str(error.get("msg", "invalid"))}
