"""Password hashing: argon2id, parameters from settings, rehash when they change.

Verification runs in a worker thread: an argon2 check takes tens of milliseconds of CPU and
must not stall the event loop. An unknown username is checked against a dummy hash made with
the same parameters, so its timing matches a wrong password's.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import anyio.to_thread
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from ..config import Settings


@dataclass(frozen=True, slots=True)
class Verified:
    ok: bool
    needs_rehash: bool = False


class Passwords:
    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_cost,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> Verified:
        """Check ``password``; with no hash (unknown user), spend the same time and fail."""
        if password_hash is None:
            await anyio.to_thread.run_sync(self._check, await self._dummy_hash(), password)
            return Verified(False)
        if not await anyio.to_thread.run_sync(self._check, password_hash, password):
            return Verified(False)
        return Verified(True, self._hasher.check_needs_rehash(password_hash))

    def _check(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_urlsafe(16))
        return self._dummy
