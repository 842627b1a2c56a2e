"""Load held: mixed traffic from many users for a fixed time (45 s in all by default, 10
minutes per backend at full size) with the server's RSS and open file descriptors sampled
(psutil on its pid). After a warm-up, growth stays within a bound, and no request fails.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import SHARED_BACKENDS, url_for
from tests.reliability.checks import clean_log, members
from tests.reliability.conftest import Figures, size
from tests.reliability.traffic import TRAFFIC_SETTINGS, Traffic, check_acknowledged
from tests.service.server import start

SECONDS = size(15, 600)  # per backend
USERS = int(size(12, 48))
EVERY = size(0.5, 10)  # seconds between samples
WARM_UP = 0.3  # the first 30 % of the run is not judged
RSS_GROWTH_MIB = 24.0  # after the warm-up, to the end
FD_GROWTH = 8
MiB = 1024 * 1024


def _slope(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope, per minute."""
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    num = sum((t - mean_t) * (v - mean_v) for t, v in samples)
    den = sum((t - mean_t) ** 2 for t, _ in samples) or 1.0
    return num / den * 60


@pytest.mark.timeout(SECONDS * 2 + 180)
@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_load_held(backend: str, tmp_path: Path, figures: Figures) -> None:
    server = start(url_for(backend, tmp_path), tmp_path, **TRAFFIC_SETTINGS)
    process = psutil.Process(server.proc.pid)
    samples: list[tuple[float, float, int, int]] = []  # t, rss MiB, fds, threads
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            with process.oneshot():
                samples.append((time.monotonic(), process.memory_info().rss / MiB,
                                process.num_fds(), process.num_threads()))  # fmt: skip
            done.wait(EVERY)  # the sampling period, not a wait for a condition

    try:
        group = members(server.url, f"{backend[:2]}soak", USERS)
        sampler = threading.Thread(target=sample, daemon=True)
        # jobs at a pace the deployment's 16 slots keep up with: a held load, not a backlog
        with Traffic([server.url], group, job_every=USERS / 8) as traffic:
            sampler.start()
            began = time.monotonic()
            done.wait(SECONDS)  # the soak's fixed duration
            done.set()
        sampler.join(30)
        assert not traffic.unexpected, traffic.unexpected[:5]
        assert not traffic.history.failed(), traffic.history.failed()
        totals = check_acknowledged(server.url, group, jobs_within=120)
    finally:
        done.set()
        server.stop()
    clean_log(server)
    judged = [s for s in samples if s[0] >= began + WARM_UP * SECONDS]
    assert len(judged) >= 5, samples
    rss_growth = judged[-1][1] - judged[0][1]
    fd_growth = judged[-1][2] - judged[0][2]
    summary = traffic.history.summary()
    figures.record(
        f"{backend}: soak {SECONDS:g} s, {USERS} users", backend=backend,
        requests=summary["requests"], rps=round(summary["requests"] / SECONDS, 1),
        p50_s=summary["p50_s"], p99_s=summary["p99_s"], failed=summary["failed"],
        rss_start_mib=round(samples[0][1], 1), rss_end_mib=round(samples[-1][1], 1),
        rss_growth_after_warmup_mib=round(rss_growth, 1),
        rss_slope_mib_per_min=round(_slope([(t, r) for t, r, _, _ in judged]), 2),
        fds_start=samples[0][2], fds_end=samples[-1][2], fd_growth_after_warmup=fd_growth,
        threads_end=samples[-1][3], lost=0, **totals,
    )  # fmt: skip
    assert rss_growth < RSS_GROWTH_MIB, judged
    assert fd_growth <= FD_GROWTH, judged
