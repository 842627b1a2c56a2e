from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sessionward import FakeClock, Settings, open_ward
from sessionward.ward import Ward

SECRET = "test-secret-" + "x" * 40


def auth_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "secret_key": SECRET,
        "argon2_time_cost": 1,
        "argon2_memory_cost": 8,
        "argon2_parallelism": 1,
        "sessions_per_user": 100,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings() -> Settings:
    return auth_settings()


@pytest.fixture
async def ward(store_url: str, clock: FakeClock, settings: Settings) -> AsyncIterator[Ward]:
    async with open_ward(store_url, settings=settings, clock=clock, sweep=False) as ward:
        yield ward
