"""A store that stops answering is a message on the page, never a traceback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionward import SyncWard
from tests.e2e.test_outage import OwnRedis
from tests.service.server import FAST_ARGON2, free_port

from .conftest import SECRET, app_settings, dashboard, log_in, restart


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    redis = OwnRedis(free_port(), tmp_path)
    redis.start()
    yield redis
    if redis.proc is not None and redis.proc.poll() is None:
        redis.kill()


def test_the_store_going_away_is_a_message(
    own_redis: OwnRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = own_redis.url(f"sw-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("SESSIONWARD_STORE", url)
    monkeypatch.setenv("SESSIONWARD_SECRET_KEY", SECRET)
    for name, value in FAST_ARGON2.items():
        monkeypatch.setenv(name, value)
    restart()
    try:
        with SyncWard(url, settings=app_settings()) as ward:
            at = dashboard(log_in(ward, "alice"))
            assert not at.exception and not at.error
            own_redis.kill()
            at.run()
        assert [e.value for e in at.error] == [
            "The session store cannot be reached just now. Please try again shortly."
        ]
        assert not at.exception
    finally:
        restart()
