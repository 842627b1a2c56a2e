"""The capacity package's pure parts: gates, recommendations, samples, the request window,
the history ring, and cgroup v2 files."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import pytest

from sessionward.capacity import Activity, Gate, History, Sample, recommend
from sessionward.capacity.machine import MachineProbe, cgroup_dir, cpu_quota, memory_figures
from sessionward.config import Settings


def test_a_gate_trips_at_the_line_and_releases_below_the_hysteresis() -> None:
    gate = Gate(80.0, 0.1)
    # a load hovering just around the line: admitted below 80, then refused until < 72
    loads = [79.0, 80.0, 79.5, 78.0, 75.0, 72.5, 71.9, 79.9, 80.1, 73.0]
    assert [gate.over(x) for x in loads] == [
        False, True, True, True, True, True, False, False, True, True,
    ]  # fmt: skip


def test_no_flapping_near_the_line() -> None:
    gate = Gate(100.0, 0.1)
    noisy = [100.0 + (3.0 if n % 2 else -3.0) for n in range(40)]  # 97, 103, 97, ...
    decisions = [gate.over(x) for x in noisy]
    changes = sum(a != b for a, b in itertools.pairwise(decisions))
    assert changes == 1  # tripped once at the first 103, never released at 97


def test_a_gate_at_zero_or_without_a_figure_never_trips() -> None:
    assert not Gate(0, 0.1).over(1e9)
    gate = Gate(2, 0.1)
    assert gate.over(2) and not gate.over(None) and gate.over(2)


def _sample(n: int, **figures: object) -> Sample:
    return replace(Sample("i", 1_000.0 + 5 * n), **figures)  # type: ignore[arg-type]


def test_recommendations_from_a_saturated_pool_and_a_full_job_limit() -> None:
    settings = Settings(jobs_running=8)
    samples = [
        _sample(n, pool_in_use=10, pool_max=10, pool_waiting=3 if n % 5 < 2 else 0,
                jobs_running=8, jobs_queued=12 if n < 30 else 0)
        for n in range(60)
    ]  # fmt: skip
    words = recommend(samples, settings)
    assert any(w.startswith("store pool saturated 100% of the last 5 minutes") for w in words)
    assert any("global limit of 8 for 150 s" in w and "12.0 queued" in w for w in words)


def test_recommendations_for_memory_loop_lag_cpu_and_users() -> None:
    settings = Settings(capacity_max_active_users=100)
    samples = [
        _sample(n, memory_used=95, memory_limit=100, memory_source="cgroup", loop_lag=0.25,
                cpu_used=90.0, active_users=95)
        for n in range(3)
    ]  # fmt: skip
    words = recommend(samples, settings)
    assert "memory at 95% of its limit (cgroup)" in words[0]
    assert "CPU at 90%" in words[1]
    assert "event-loop lag reached 250 ms" in words[2]
    assert "95 of at most 100 active users" in words[3]


def test_a_quiet_instance_needs_nothing() -> None:
    samples = [_sample(n, pool_max=10, pool_in_use=1, memory_used=1, memory_limit=10)
               for n in range(60)]  # fmt: skip
    assert recommend(samples, Settings()) == []
    assert recommend([], Settings()) == []


def test_only_the_last_five_minutes_count() -> None:
    old = [_sample(n, pool_waiting=5, pool_max=1) for n in range(60)]
    fresh = [_sample(n, pool_max=10) for n in range(60, 120)]
    assert recommend(old + fresh, Settings()) == []


def test_a_sample_round_trips_and_tolerates_other_versions() -> None:
    sample = _sample(1, errors=("ping: no answer",), memory_limit=None, active_users=3)
    assert Sample.from_json(sample.to_json()) == sample
    newer = sample.to_json()[:-1] + ',"from_the_future":1}'
    assert Sample.from_json(newer) == sample
    assert Sample.from_json('{"instance_id":"x","at":1}') == Sample("x", 1)


def test_the_request_window_slides() -> None:
    now = [0.0]
    activity = Activity(60.0, lambda: now[0])
    for n in range(100):
        activity.request(n / 1000)  # 0 .. 99 ms
    figures = activity.requests()
    assert (figures.rate, figures.p50, figures.p99) == (100 / 60, 0.049, 0.098)
    now[0] = 61.0
    assert activity.requests().p50 is None and activity.requests().rate == 0.0


def test_the_history_is_bounded() -> None:
    history = History(3600, 5)
    assert history.capacity == 720
    for n in range(1000):
        history.add(_sample(n))
    assert len(history) == 720
    assert history.latest() == _sample(999)
    assert [s.at for s in history.since(_sample(998).at)] == [_sample(998).at, _sample(999).at]


@pytest.fixture
def cgroup(tmp_path: Path) -> Path:
    root = tmp_path / "cgroup"
    group = root / "app.slice"
    group.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory\n")
    (group / "cpu.max").write_text("150000 100000\n")
    (group / "memory.max").write_text("536870912\n")
    (group / "memory.current").write_text("134217728\n")
    (tmp_path / "proc-cgroup").write_text("0::/app.slice\n")
    return root


def test_cgroup_v2_limits_are_read(cgroup: Path, tmp_path: Path) -> None:
    group = cgroup_dir(cgroup, tmp_path / "proc-cgroup")
    assert group == cgroup / "app.slice"
    assert cpu_quota(group) == 1.5
    assert memory_figures(group) == (134217728, 536870912, "cgroup")
    (group / "cpu.max").write_text("max 100000\n")
    (group / "memory.max").write_text("max\n")
    assert cpu_quota(group) is None
    assert memory_figures(group) == (134217728, None, "cgroup")


def test_without_cgroup_v2_the_host_is_used(tmp_path: Path) -> None:
    assert cgroup_dir(tmp_path, tmp_path / "missing") is None
    assert memory_figures(None) is None
    figures = MachineProbe(None, detect=False).read()
    assert figures.memory_source == "host" and figures.memory_limit
    assert figures.rss > 0 and figures.open_fds > 0 and figures.cpu_limit >= 1


def test_the_probe_reads_the_cgroup(cgroup: Path) -> None:
    figures = MachineProbe(cgroup / "app.slice").read()
    assert (figures.memory_used, figures.memory_limit, figures.cpu_limit) == (
        134217728, 536870912, 1.5,
    )  # fmt: skip
    assert figures.memory_source == "cgroup"
