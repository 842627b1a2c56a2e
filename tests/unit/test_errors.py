from __future__ import annotations

import sqlite3

import pytest

import sessionward
from sessionward import errors
from sessionward.stores.retry import Retrier


def test_every_error_has_one_root() -> None:
    classes = [
        value
        for value in vars(errors).values()
        if isinstance(value, type)
        and issubclass(value, Exception)
        and value.__module__ == errors.__name__
    ]
    assert len(classes) > 20
    assert all(issubclass(cls, errors.SessionwardError) for cls in classes)


def test_the_architecture_errors_are_public() -> None:
    for name in [
        "RateLimited", "AccountLocked", "BudgetExceeded", "CapacityExceeded", "InvalidToken",
        "RefreshTokenReused", "SessionRevoked", "WriteConflict", "StorageUnavailable",
        "ConfigurationError",
    ]:  # fmt: skip
        assert issubclass(getattr(sessionward, name), sessionward.SessionwardError)


def test_expiry_errors_are_distinct_session_errors() -> None:
    idle, absolute = errors.SessionIdleExpired, errors.SessionAbsoluteExpired
    assert issubclass(idle, errors.SessionExpired) and issubclass(absolute, errors.SessionExpired)
    assert not issubclass(idle, absolute) and not issubclass(absolute, idle)
    assert issubclass(errors.SessionRevoked, errors.SessionError)


def test_retry_after_is_carried() -> None:
    assert errors.RateLimited("slow down", 3.0).retry_after == 3.0
    assert errors.BudgetExceeded(12).remaining == 12


@pytest.mark.anyio
async def test_driver_errors_are_wrapped_from_the_original() -> None:
    retrier = Retrier("sqlite", lambda exc: False)

    async def fails() -> None:
        raise sqlite3.DatabaseError("disk image is malformed")

    with pytest.raises(errors.StorageError) as caught:
        await retrier(fails)
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    assert not isinstance(caught.value, errors.StorageUnavailable)


@pytest.mark.anyio
async def test_transient_errors_are_retried_then_reported_unavailable() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("reset")
        return "ok"

    retrier = Retrier("redis", lambda exc: isinstance(exc, ConnectionError), attempts=4)
    assert await retrier(flaky) == "ok" and calls == 3

    async def down() -> None:
        raise ConnectionError("refused")

    with pytest.raises(errors.StorageUnavailable):
        await Retrier("redis", lambda exc: isinstance(exc, ConnectionError), attempts=2)(down)


@pytest.mark.anyio
async def test_non_idempotent_operations_are_not_repeated() -> None:
    calls = 0

    async def once() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("dropped mid-flight")

    with pytest.raises(errors.StorageUnavailable):
        await Retrier("redis", lambda exc: True)(once, idempotent=False)
    assert calls == 1
