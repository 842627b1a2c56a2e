"""The background sweeper that ``open_ward`` starts deletes expired sessions by itself, and a
sweep that fails is logged without stopping the next ones."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from sessionward import FakeClock, Settings, open_ward
from sessionward.errors import StorageUnavailable
from sessionward.testing import wait_until_async
from tests.conftest import url_for

pytestmark = pytest.mark.anyio
SETTINGS = Settings(
    sweep_interval=0.02,
    session_idle_timeout=60,
    session_absolute_timeout=600,
    session_touch_interval=10,
)


def _rows(url: str) -> int:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return int(conn.execute("SELECT count(*) FROM sw_sessions").fetchone()[0])


async def _until(predicate: Callable[[], bool]) -> None:
    async def check() -> bool:
        return predicate()

    await wait_until_async(check, what="the sweep")


async def test_the_sweeper_deletes_expired_sessions_by_itself(tmp_path: Path) -> None:
    url, clock = url_for("sqlite", tmp_path), FakeClock()
    async with open_ward(url, settings=SETTINGS, clock=clock) as ward:
        await ward.sessions.create("alice")
        kept = await ward.sessions.create("bob")
        clock.advance(30)
        await ward.sessions.validate(kept.token)  # bob is seen; alice is not
        assert _rows(url) == 2
        clock.advance(31)  # alice idle-expired; her tombstone may go
        await _until(lambda: _rows(url) == 1)
        assert (await ward.sessions.validate(kept.token)).user_id == "bob"


async def test_a_failed_sweep_is_logged_and_the_next_one_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, clock = url_for("sqlite", tmp_path), FakeClock()
    async with open_ward(url, settings=SETTINGS, clock=clock) as ward:
        sweep, failures = ward.sessions.sweep, [1]

        async def flaky() -> int:
            if failures:
                failures.pop()
                raise StorageUnavailable("the store is away")
            return await sweep()

        ward.sessions.sweep = flaky  # type: ignore[method-assign]
        await ward.sessions.create("alice")
        clock.advance(61)
        with caplog.at_level(logging.WARNING, logger="sessionward"):
            await _until(lambda: _rows(url) == 0)
        assert not failures
        assert any("sweep failed: the store is away" in r.getMessage() for r in caplog.records)
