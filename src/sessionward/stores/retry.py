"""Retry with backoff on transient store errors, and wrapping of driver errors.

Only operations that are safe to repeat are retried: reads, idempotent writes, and writes
whose failure proves nothing was committed (SQLite's "database is locked"). A compare-and-set
that may have been applied before the connection dropped is not repeated: repeating it could
turn a success into a false ``WriteConflict``. Errors that mean the store is unavailable
but that a retry within the request cannot help (a pool wait that already took its whole
timeout, a full disk) are ``unavailable``: raised at once as :class:`StorageUnavailable`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from ..errors import SessionwardError, StorageError, StorageUnavailable

T = TypeVar("T")


class Retrier:
    """Run store operations, retrying transient failures and wrapping driver exceptions."""

    def __init__(
        self,
        backend: str,
        is_transient: Callable[[BaseException], bool],
        *,
        attempts: int = 4,
        max_delay: float = 10.0,
        unavailable: Callable[[BaseException], bool] | None = None,
    ) -> None:
        self._backend = backend
        self._is_transient = is_transient
        self._unavailable = unavailable or (lambda exc: False)
        self._attempts = attempts
        self._max_delay = max_delay

    async def __call__(self, op: Callable[[], Awaitable[T]], *, idempotent: bool = True) -> T:
        try:
            return await op()  # the common case pays for no retry machinery
        except SessionwardError:
            raise
        except Exception as exc:
            if not (idempotent and self._is_transient(exc)):
                raise self.wrap(exc) from exc
        try:
            return await self._retry(op)
        except SessionwardError:
            raise
        except Exception as exc:
            raise self.wrap(exc) from exc

    async def _retry(self, op: Callable[[], Awaitable[T]]) -> T:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self._attempts - 1) | stop_after_delay(self._max_delay),
            wait=wait_random_exponential(multiplier=0.05, max=1.0),
            retry=retry_if_exception(self._is_transient),
            reraise=True,
        ):
            with attempt:
                return await op()
        raise AssertionError("unreachable")  # pragma: no cover

    def wrap(self, exc: BaseException) -> StorageError:
        if self._is_transient(exc) or self._unavailable(exc):
            return StorageUnavailable(f"the {self._backend} store is unavailable: {exc}")
        return StorageError(f"the {self._backend} store failed: {type(exc).__name__}: {exc}")
