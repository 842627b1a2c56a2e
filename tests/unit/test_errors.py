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


@pytest.mark.anyio
async def test_unavailable_errors_are_503_at_once_never_retried() -> None:
    calls = 0

    async def times_out() -> None:
        nonlocal calls
        calls += 1
        raise TimeoutError("no reply within socket_timeout")

    retrier = Retrier("redis", lambda exc: isinstance(exc, ConnectionError),
                      unavailable=lambda exc: isinstance(exc, TimeoutError))  # fmt: skip
    with pytest.raises(errors.StorageUnavailable) as caught:
        await retrier(times_out)
    assert calls == 1 and isinstance(caught.value.__cause__, TimeoutError)


def _sqlite_error(name: str) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(name)
    exc.sqlite_errorname = name
    return exc


@pytest.mark.parametrize(
    ("name", "wrapped"),
    [("SQLITE_FULL", errors.StorageUnavailable), ("SQLITE_IOERR_WRITE", errors.StorageUnavailable),
     ("SQLITE_BUSY", errors.StorageUnavailable), ("SQLITE_CORRUPT", errors.StorageError)],
)  # fmt: skip
def test_sqlite_full_disk_and_io_errors_are_unavailable(
    name: str, wrapped: type[errors.StorageError]
) -> None:
    from sessionward.stores.sqlite.store import _is_transient, _is_unavailable

    exc = _sqlite_error(name)
    assert _is_unavailable(exc) == name.startswith(("SQLITE_FULL", "SQLITE_IOERR"))
    assert _is_transient(exc) == (name == "SQLITE_BUSY")  # a full disk is not retried
    assert type(Retrier("sqlite", _is_transient, unavailable=_is_unavailable).wrap(exc)) is wrapped


def test_redis_and_postgres_timeouts_are_unavailable_not_transient() -> None:
    import psycopg
    import redis.exceptions
    from psycopg_pool import PoolTimeout

    from sessionward.stores.postgres import connection as pg
    from sessionward.stores.redis import connection as rd

    assert rd.is_unavailable(redis.exceptions.TimeoutError()) and rd.is_unavailable(TimeoutError())
    assert not rd.is_transient(redis.exceptions.TimeoutError())
    assert rd.is_transient(redis.exceptions.ConnectionError("refused"))
    assert pg.is_unavailable(PoolTimeout("no connection")) and not pg.is_transient(PoolTimeout())
    assert pg.is_transient(psycopg.OperationalError("server closed the connection"))
