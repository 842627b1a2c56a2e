"""A flood of distinct keys through the memory store stays within its cap, in entries and
in RSS; keys whose TAT has passed are as good as absent, and a sweep removes them.

The flood runs in a child interpreter so that its RSS (``/proc/self/status``) measures the
store and nothing the test session allocated before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from sessionward import FakeClock, Settings, open_ward
from sessionward.limits import parse_policy

ROOT = Path(__file__).resolve().parents[2]
FULL = os.environ.get("SESSIONWARD_STRESS") == "1"
KEYS, CAP = (1_000_000, 100_000) if FULL else (200_000, 50_000)
# RSS the store may take per entry its cap admits. Measured (CPython 3.11, x86-64): ~330 B
# per key when the store first fills, ~560 B once the LRU turns over (dict slack).
BUDGET_PER_ENTRY = 1024
POLICY = "10/minute"  # one limit: one entry per key
CHECK_EVERY = 1000


@pytest.mark.stress
def test_a_flood_of_distinct_keys_stays_within_the_cap() -> None:
    report = _flood(CAP, KEYS)
    print(json.dumps(report, indent=1))  # the figures for the docs (pytest -s)
    assert report["max_entries"] == CAP  # the flood filled the store, and never passed it
    assert report["max_limits"] == CAP
    assert report["at_cap_bytes_per_entry"] > 50  # the measurement measured something
    budget = CAP * BUDGET_PER_ENTRY
    assert report["peak_growth"] <= budget, (
        f"RSS grew {report['peak_growth'] / 1e6:.1f} MB for a cap of {CAP} entries "
        f"(budget {budget / 1e6:.1f} MB)"
    )


@pytest.mark.stress
def test_keys_whose_tat_passed_are_absent_and_swept_away() -> None:
    report = _flood(CAP, CAP)
    # the newest key, an hour later, decides exactly as a key never seen
    assert report["expired_decision"] == report["fresh_decision"]
    assert report["swept"] == CAP - 1  # everything but the key just hit again
    assert report["limits_after_sweep"] == 1
    assert report["entries_after_sweep"] == 1, (
        f"after the sweep the store still counts {report['entries_after_sweep']} entries "
        "for 1 limiter key: swept keys stay in its LRU"
    )


@pytest.mark.anyio
@pytest.mark.parametrize("forget", ["sweep", "reset"])
async def test_forgotten_limiter_keys_leave_room_for_live_entries(forget: str) -> None:
    # a store of 10 entries: one session and nine limiter keys fill it; once the keys are
    # swept (their TATs passed) or reset, nine new keys fit beside the session
    clock = FakeClock()
    async with open_ward("memory://?max_entries=10", clock=clock, sweep=False) as ward:
        new = await ward.sessions.create("alice")
        for n in range(9):
            await ward.limits.hit(f"old-{n}", "10/second")
        if forget == "sweep":
            clock.advance(1)
            assert (await ward.cleanup()).limits == 9
        else:
            for n in range(9):
                await ward.limits.reset(f"old-{n}")
        for n in range(9):
            await ward.limits.hit(f"new-{n}", "10/second")
        assert len(ward.store) == 10  # type: ignore[arg-type]
        session = await ward.sessions.validate(new.token)  # not evicted for a forgotten key
        assert session.session_id == new.session.session_id


def _flood(cap: int, keys: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", "from tests.limits.test_memory_bound import child; child()",
         str(cap), str(keys)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.splitlines()[-1]))


def child() -> None:
    cap, keys = int(sys.argv[1]), int(sys.argv[2])
    print(json.dumps(anyio.run(_child, cap, keys)))


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def _child(cap: int, keys: int) -> dict[str, Any]:
    clock = FakeClock()
    settings = Settings(sweep_batch_size=100_000)
    policy = parse_policy(POLICY)
    url = f"memory://?max_entries={cap}"
    async with open_ward(url, settings=settings, clock=clock, sweep=False) as ward:
        store: Any = ward.store
        fresh = await ward.limits.hit("never-seen", policy)
        await ward.limits.reset("never-seen")
        base = _rss()
        at_cap = peak = max_entries = max_limits = 0
        for n in range(keys):
            await ward.limits.hit(_key(n), policy)
            if (n + 1) % CHECK_EVERY == 0 or n + 1 == cap:
                max_entries = max(max_entries, len(store))
                max_limits = max(max_limits, len(store._limits))
                peak = max(peak, _rss() - base)
                if n + 1 == cap:
                    at_cap = _rss() - base
        clock.advance(3600)
        expired = await ward.limits.hit(_key(keys - 1), policy)  # the newest key
        swept = 0
        while (report := await ward.cleanup()).limits:
            swept += report.limits
        return {
            "cap": cap, "keys": keys, "base_rss": base, "at_cap_growth": at_cap,
            "at_cap_bytes_per_entry": at_cap / cap, "peak_growth": peak,
            "peak_bytes_per_entry": peak / cap, "max_entries": max_entries,
            "max_limits": max_limits, "swept": swept,
            "expired_decision": _seen(expired), "fresh_decision": _seen(fresh),
            "limits_after_sweep": len(store._limits), "entries_after_sweep": len(store),
        }  # fmt: skip


def _key(n: int) -> str:
    return f"ip:10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}/{n}"


def _seen(d: Any) -> list[Any]:
    return [d.allowed, d.remaining, round(d.reset_after, 6), round(d.retry_after, 6)]
