"""The exceptions sessionward raises.

Every exception derives from :class:`SessionwardError`; driver exceptions (redis-py, psycopg,
sqlite3) never escape: they are wrapped in :class:`StorageError` with the original as
``__cause__``. Expected outcomes of a *check* are values (a ``Decision``); *enforcing* calls
raise. The web layer maps each class to an HTTP status in one table.

    SessionwardError
    ├── ConfigurationError          bad URL, option or setting
    ├── InvalidArgument             a value passed to the API is not acceptable (also a ValueError)
    │   ├── InvalidStateName        (also a StateError)
    │   ├── InvalidStateData        (also a StateError)
    │   └── InvalidJobParams        a job's parameters do not fit its kind's model
    ├── StorageError                the store failed
    │   └── StorageUnavailable      the store cannot be reached (after retries)
    ├── SessionError
    │   ├── UnknownSession          no such session (never issued, or gone)
    │   ├── SessionRevoked          revoked (logout, rotation of all, eviction)
    │   ├── SessionExpired
    │   │   ├── SessionIdleExpired       no activity within the idle timeout
    │   │   └── SessionAbsoluteExpired   older than the absolute lifetime
    │   └── SessionLimitExceeded    the user already holds the maximum number of sessions
    ├── StateError
    │   ├── InvalidStateName        (also an InvalidArgument)
    │   ├── InvalidStateData        not plain JSON (NaN, lone surrogates, objects)
    │   ├── StateTooLarge
    │   └── WriteConflict           a compare-and-set lost to another writer
    ├── InvalidToken
    │   └── RefreshTokenReused
    ├── InvalidCredentials          unknown user, wrong password or disabled account
    ├── UsernameTaken
    ├── UnknownJobKind              no job kind of that name is registered
    ├── JobLimitExceeded            the user has the maximum number of waiting jobs
    ├── UnknownJob                  the user has no job of that id
    ├── JobError                    raised by a job's handler: the job fails with its message
    ├── JobCancelled                raised in a thread handler by ``ctx.check()`` once stopped
    ├── AccountLocked               (carries ``retry_after``)
    ├── RateLimited                 (carries ``retry_after``)
    ├── BudgetError
    │   ├── BudgetExceeded          nothing was charged
    │   ├── IdempotencyMismatch     the same key with another amount
    │   ├── UnknownCharge           no such charge or hold (or it expired)
    │   └── AlreadyRefunded
    └── CapacityExceeded            (carries ``retry_after``)
"""

from __future__ import annotations


class SessionwardError(Exception):
    """Root of every sessionward exception."""


class ConfigurationError(SessionwardError):
    """A URL, option or setting is wrong; the message says what is accepted."""


class InvalidArgument(SessionwardError, ValueError):
    """A value passed to the API is not acceptable; the message says what is."""


class StorageError(SessionwardError):
    """The store failed to carry out an operation."""


class StorageUnavailable(StorageError):
    """The store could not be reached, even after retrying."""


class SessionError(SessionwardError):
    """A session cannot be used."""


class UnknownSession(SessionError):
    """No session matches: never issued, rotated away, or already swept."""


class SessionRevoked(SessionError):
    """The session was revoked and can never validate again."""


class SessionExpired(SessionError):
    """The session has expired."""


class SessionIdleExpired(SessionExpired):
    """The session saw no activity within the idle timeout."""


class SessionAbsoluteExpired(SessionExpired):
    """The session outlived its absolute lifetime."""


class SessionLimitExceeded(SessionError):
    """The user already holds the maximum number of sessions and the policy refuses more."""


class StateError(SessionwardError):
    """A state document operation was refused."""


class InvalidStateName(StateError, InvalidArgument):
    """A state document name is not of the accepted form."""


class InvalidStateData(StateError, InvalidArgument):
    """A state document is not plain JSON."""


class StateTooLarge(StateError):
    """A state document is larger than the configured limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"state document is {size} bytes; the limit is {limit} bytes")
        self.size = size
        self.limit = limit


class WriteConflict(StateError):
    """A compare-and-set write lost: the document's version is not the one expected."""

    def __init__(self, expected: int | None, actual: int | None) -> None:
        shown = "absent" if actual is None else f"at version {actual}"
        super().__init__(f"expected version {expected}, but the document is {shown}")
        self.expected = expected
        self.actual = actual


class InvalidToken(SessionwardError):
    """A token is malformed, expired, revoked or was never issued."""


class RefreshTokenReused(InvalidToken):
    """A spent refresh token was presented again; its session has been revoked."""


class InvalidCredentials(SessionwardError):
    """The username or password is wrong (which one is never said)."""


class UsernameTaken(SessionwardError):
    """Another user already has this username (usernames are unique ignoring case)."""


class UnknownJobKind(SessionwardError):
    """No job kind of that name is registered."""


class JobLimitExceeded(SessionwardError):
    """The user already has the maximum number of waiting jobs."""


class UnknownJob(SessionwardError):
    """The user has no job of that id."""


class JobError(SessionwardError):
    """Raised by a handler: the job fails, and the owner sees this message."""


class JobCancelled(SessionwardError):
    """Raised inside a thread handler by ``ctx.check()`` once the job is being stopped."""


class InvalidJobParams(InvalidArgument):
    """The parameters do not fit the kind's model; ``fields`` says which and why."""

    def __init__(self, kind: str, fields: list[dict[str, str]]) -> None:
        first = fields[0] if fields else {"field": "params", "message": "invalid"}
        super().__init__(f"invalid params for {kind}: {first['field']}: {first['message']}")
        self.fields = fields


class _RetryAfter(SessionwardError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AccountLocked(_RetryAfter):
    """Too many failed logins: the account (or client) is locked for ``retry_after`` seconds."""


class RateLimited(_RetryAfter):
    """A rate limit refused the request; retry after ``retry_after`` seconds."""


class CapacityExceeded(_RetryAfter):
    """Admission control refused new work; retry after ``retry_after`` seconds."""


class BudgetError(SessionwardError):
    """A budget operation was refused."""


class BudgetExceeded(BudgetError):
    """A charge would pass the budget; nothing was charged."""

    def __init__(self, remaining: int, scope: str = "session") -> None:
        super().__init__(f"the charge exceeds the {scope}'s remaining budget of {remaining}")
        self.remaining = remaining
        self.scope = scope


class IdempotencyMismatch(BudgetError):
    """The idempotency key was used before with a different amount."""


class UnknownCharge(BudgetError):
    """No such charge or hold in this session (or the hold expired)."""


class AlreadyRefunded(BudgetError):
    """The charge was refunded already; a charge is refunded at most once."""
