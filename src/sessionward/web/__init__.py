"""Framework glue for Starlette/FastAPI apps: rate-limit middleware, error responses."""

from __future__ import annotations

from .limits import RateLimitMiddleware, Rule, by_ip, by_route, by_session, by_user

__all__ = ["RateLimitMiddleware", "Rule", "by_ip", "by_route", "by_session", "by_user"]
