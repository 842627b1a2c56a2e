"""The blocking API: same behaviour as the async one, from threads, on every backend."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from sessionward import ConfigurationError, FakeClock, SessionRevoked, SyncWard, WriteConflict
from sessionward._sync_api import (
    SyncJobs,
    SyncRateLimiter,
    SyncSessions,
    SyncStateManager,
    SyncWardMethods,
)
from sessionward.jobs import Jobs
from sessionward.limits import RateLimiter
from sessionward.sessions import Sessions
from sessionward.state import StateManager
from sessionward.ward import Ward

ROOT = Path(__file__).resolve().parents[2]


def test_sync_ward_round_trip(store_url: str) -> None:
    clock = FakeClock()
    with SyncWard(store_url, clock=clock, sweep=False) as ward:
        latency = ward.ping()
        assert isinstance(latency, float) and 0 <= latency < 5
        new = ward.sessions.create("alice", ip="203.0.113.9")
        session = ward.sessions.validate(new.token)
        assert session.session_id == new.session.session_id
        assert ward.state.put(session.scope(), "doc", {"a": 1}) == 1
        with pytest.raises(WriteConflict):
            ward.state.put(session.scope(), "doc", {"a": 2}, expected_version=0)
        assert ward.sessions.revoke("alice", session.session_id)
        with pytest.raises(SessionRevoked):
            ward.sessions.validate(new.token)
        ward.sessions.create("bob")
        clock.advance(ward.settings.session_idle_timeout + 1)
        assert ward.cleanup().sessions >= 1  # bob's, idle now (alice's too where kept)
        assert ward.cleanup().sessions == 0
        assert "SyncWard(StoreURL(" in repr(ward)


@pytest.mark.parametrize(
    ("sync_cls", "async_cls"),
    [
        (SyncSessions, Sessions),
        (SyncStateManager, StateManager),
        (SyncWardMethods, Ward),
        (SyncRateLimiter, RateLimiter),
        (SyncJobs, Jobs),
    ],
)
def test_sync_twins_have_the_async_signatures(sync_cls: type, async_cls: type) -> None:
    for name, fn in vars(async_cls).items():
        # attach_events: an event hub is async, so it has no blocking twin
        skipped = ("run_sweeper", "gcra", "watch", "announce", "poke_workers", "notify_work",
                   "attach_events")  # fmt: skip
        if name.startswith("_") or name in skipped or not inspect.isfunction(fn):
            continue
        twin = getattr(sync_cls, name)
        assert inspect.signature(twin) == inspect.signature(fn), name


def test_generated_file_is_fresh() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/gen_sync.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_sync_ward_cannot_be_built_inside_an_event_loop() -> None:
    async def build() -> None:
        with pytest.raises(ConfigurationError, match="use `async with sessionward"):
            SyncWard("memory://", sweep=False)

    anyio.run(build)


def test_sync_ward_cannot_be_called_inside_an_event_loop() -> None:
    with SyncWard("memory://", sweep=False) as ward:

        async def call() -> None:
            with pytest.raises(ConfigurationError, match="inside a running event loop"):
                ward.sessions.create("alice")
            with pytest.raises(ConfigurationError, match="inside a running event loop"):
                ward.start_job_worker()

        anyio.run(call)
        assert ward.sessions.create("alice").session.user_id == "alice"
