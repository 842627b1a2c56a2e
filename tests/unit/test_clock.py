from __future__ import annotations

import time

import pytest

from sessionward import FakeClock, SystemClock


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(100.0)
    assert clock.now() == clock.now() == 100.0
    clock.advance(2.5)
    assert clock.now() == clock.monotonic() == 102.5
    clock.set(200)
    assert clock.now() == 200.0


def test_fake_clock_never_goes_back() -> None:
    clock = FakeClock(100.0)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.set(50)


def test_system_clock_is_the_wall_clock() -> None:
    before = time.time()
    now = SystemClock().now()
    assert before <= now <= time.time()
