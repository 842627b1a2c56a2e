"""sessionward: isolated, durable, race-free sessions and state for Python web apps."""

from __future__ import annotations

from .clock import Clock, FakeClock, SystemClock
from .config import Settings
from .errors import (
    AccountLocked,
    BudgetExceeded,
    CapacityExceeded,
    ConfigurationError,
    InvalidArgument,
    InvalidStateData,
    InvalidStateName,
    InvalidToken,
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
    UnknownSession,
    WriteConflict,
)
from .sessions import NewSession, Session, Sessions
from .state import StateDocument, StateManager
from .stores.base import PoolStats, StateScope
from .sync import SyncWard
from .urls import StoreURL, parse_store_url
from .ward import CleanupReport, Ward, open_ward

__version__ = "0.1.0"

__all__ = [
    "AccountLocked",
    "BudgetExceeded",
    "CapacityExceeded",
    "CleanupReport",
    "Clock",
    "ConfigurationError",
    "FakeClock",
    "InvalidArgument",
    "InvalidStateData",
    "InvalidStateName",
    "InvalidToken",
    "NewSession",
    "PoolStats",
    "RateLimited",
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
    "UnknownSession",
    "Ward",
    "WriteConflict",
    "open_ward",
    "parse_store_url",
]
