"""Rate limiting: GCRA policies decided atomically in the store."""

from __future__ import annotations

from .limiter import FailMode, LimiterStats, RateLimiter
from .policy import Decision, Limit, Policy, parse_policy

__all__ = ["Decision", "FailMode", "Limit", "LimiterStats", "Policy", "RateLimiter", "parse_policy"]
