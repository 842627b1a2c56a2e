"""The error body every sessionward HTTP answer uses (docs/http-api.md):

{"error": {"code": "rate_limited", "message": "...", "retry_after": 3}}
"""

from __future__ import annotations

import math
from typing import Any

from starlette.responses import JSONResponse


def retry_seconds(seconds: float) -> int:
    """A ``Retry-After`` value: whole seconds, 1 to 86400."""
    return max(math.ceil(min(seconds, 86400.0)), 1)


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    retry_after: float | None = None,
    fields: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, object] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, **(extra or {})}
    out = dict(headers or {})
    if fields is not None:
        body["fields"] = fields
    if retry_after is not None:
        seconds = retry_seconds(retry_after)
        body["retry_after"] = seconds
        out["Retry-After"] = str(seconds)
    return JSONResponse({"error": body}, status_code=status, headers=out)
