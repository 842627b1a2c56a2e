"""Fixtures of the backend-specific store tests (test_redis_*.py, test_postgres_*.py).

A module names its backend (``BACKEND = "redis"``) and gets a URL of its own (a fresh key
prefix or schema per test), a FakeClock, the store opened on both, and on Redis a raw
client. A module that needs another shape of one of them defines its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sessionward import FakeClock
from sessionward.stores import create_store
from sessionward.stores.protocols import Store
from tests.conftest import REDIS_URL, url_for


@pytest.fixture
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return url_for(request.module.BACKEND, tmp_path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(url: str, clock: FakeClock) -> AsyncIterator[Store]:
    opened = create_store(url, clock=clock)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
async def raw() -> AsyncIterator[Any]:
    """A plain redis-py client of the test server, answers decoded."""
    from redis import asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL.split("?")[0], decode_responses=True)
    yield client
    await client.aclose()
