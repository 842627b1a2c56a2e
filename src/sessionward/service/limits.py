"""The service's rate limits (docs/http-api.md).

- register, login and refresh: per client IP (``ip_rate_limit``), failing closed;
- every other ``/v1`` endpoint: per user (``api_rate_limit``; by IP without a valid
  token), reads failing open (``rate_limit_reads_fail_open``) and writes closed;
- health, readiness, metrics and the API documents: not limited.
"""

from __future__ import annotations

from collections.abc import Callable

from ..config import Settings
from ..limits import FailMode
from ..web.limits import Rule, by_ip, by_user

_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_EXEMPT = ["/v1/health", "/v1/ready", "/metrics", "/openapi.json", "/docs*", "/redoc*"]
_ANONYMOUS = ["/v1/auth/register", "/v1/auth/login", "/v1/auth/refresh", "/admin/login"]


def rate_limit_rules(settings: Settings, verify: Callable[[str], object]) -> list[Rule]:
    ip = by_ip(settings.trusted_proxies)
    user = by_user(verify, fallback=ip)
    reads: FailMode = "open" if settings.rate_limit_reads_fail_open else "closed"
    return [
        *(Rule(path, None) for path in _EXEMPT),
        *(Rule(path, settings.ip_rate_limit, key=ip, name="ip") for path in _ANONYMOUS),
        Rule("/v1/*", settings.api_rate_limit, key=user, methods=_READS, fail=reads, name="api"),
        Rule("/v1/*", settings.api_rate_limit, key=user, methods=_WRITES, name="api"),
    ]
