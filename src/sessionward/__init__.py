"""sessionward: isolated, durable, race-free sessions and state for Python web apps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .auth import Auth, Principal, TokenPair
from .budgets import Budget, Budgets, Charge, Hold
from .clock import Clock, FakeClock, SystemClock
from .config import Settings
from .errors import (
    AccountLocked,
    AlreadyRefunded,
    BudgetError,
    BudgetExceeded,
    CapacityExceeded,
    ConfigurationError,
    IdempotencyMismatch,
    InvalidArgument,
    InvalidCredentials,
    InvalidJobParams,
    InvalidStateData,
    InvalidStateName,
    InvalidToken,
    JobCancelled,
    JobError,
    JobLimitExceeded,
    RateLimited,
    RefreshTokenReused,
    SessionAbsoluteExpired,
    SessionError,
    SessionExpired,
    SessionIdleExpired,
    SessionLimitExceeded,
    SessionRevoked,
    SessionwardError,
    StateError,
    StateTooLarge,
    StorageError,
    StorageUnavailable,
    UnknownCharge,
    UnknownJob,
    UnknownJobKind,
    UnknownSession,
    UsernameTaken,
    WriteConflict,
)
from .jobs import Job, JobContext, JobKind, Jobs, JobWorker, ThreadJobContext
from .limits import Decision, FailMode, Limit, LimiterStats, Policy, RateLimiter, parse_policy
from .sessions import NewSession, Session, Sessions
from .state import StateDocument, StateManager
from .stores.records import PoolStats, StateScope
from .urls import StoreURL, parse_store_url
from .users import User, Users
from .ward import CleanupReport, Ward, open_ward

if TYPE_CHECKING:
    from .sync import SyncWard

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # SyncWard loads on first use: async apps never pay for it, and scripts/gen_sync.py can
    # import the package while the generated module it depends on is being rewritten.
    if name == "SyncWard":
        from .sync import SyncWard

        return SyncWard
    raise AttributeError(f"module 'sessionward' has no attribute {name!r}")


__all__ = [
    "AccountLocked",
    "AlreadyRefunded",
    "Auth",
    "Budget",
    "BudgetError",
    "BudgetExceeded",
    "Budgets",
    "CapacityExceeded",
    "Charge",
    "CleanupReport",
    "Clock",
    "ConfigurationError",
    "Decision",
    "FailMode",
    "FakeClock",
    "Hold",
    "IdempotencyMismatch",
    "InvalidArgument",
    "InvalidCredentials",
    "InvalidJobParams",
    "InvalidStateData",
    "InvalidStateName",
    "InvalidToken",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobKind",
    "JobLimitExceeded",
    "JobWorker",
    "Jobs",
    "Limit",
    "LimiterStats",
    "NewSession",
    "Policy",
    "PoolStats",
    "Principal",
    "RateLimited",
    "RateLimiter",
    "RefreshTokenReused",
    "Session",
    "SessionAbsoluteExpired",
    "SessionError",
    "SessionExpired",
    "SessionIdleExpired",
    "SessionLimitExceeded",
    "SessionRevoked",
    "Sessions",
    "SessionwardError",
    "Settings",
    "StateDocument",
    "StateError",
    "StateManager",
    "StateScope",
    "StateTooLarge",
    "StorageError",
    "StorageUnavailable",
    "StoreURL",
    "SyncWard",
    "SystemClock",
    "ThreadJobContext",
    "TokenPair",
    "UnknownCharge",
    "UnknownJob",
    "UnknownJobKind",
    "UnknownSession",
    "User",
    "UsernameTaken",
    "Users",
    "Ward",
    "WriteConflict",
    "open_ward",
    "parse_policy",
    "parse_store_url",
]
