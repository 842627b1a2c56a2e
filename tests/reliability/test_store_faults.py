"""Store faults under load: Redis and PostgreSQL (servers of the test's own) stopped and
started again during traffic, and a store whose replies are slow.

While the store is down every failure is 503 ``store_unavailable`` with Retry-After (no
500); the first success comes within 2 s of the store answering again; nothing
acknowledged is lost; limits and budgets are exact afterwards.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from sessionward.testing import wait_until
from tests.reliability.checks import (
    RECOVERY,
    assert_only_unavailable,
    budget_exact,
    clean_log,
    hold,
    limits_exact,
    members,
    outage_figures,
)
from tests.reliability.conftest import FULL, Figures, size
from tests.reliability.servers import FaultProxy, OwnPostgres, OwnRedis
from tests.reliability.traffic import TRAFFIC_SETTINGS, Traffic, check_acknowledged
from tests.service.server import start

USERS = int(size(4, 12))
OUTAGES = [3.0] if not FULL else [5.0, 10.0]
BUDGET = 10**12
SLOW_BOUND = 1.9  # three store calls in a row (limit, session, handler), 0.5 s timeout each


def _ride_out(store_url: str, tmp_path: Path, figures: Figures, backend: str,
              kill: Callable[[], float], restart: Callable[[], float]) -> None:  # fmt: skip
    server = start(store_url, tmp_path, **TRAFFIC_SETTINGS)
    try:
        group = members(server.url, f"{backend[:2]}user", USERS)
        with Traffic([server.url], group) as traffic:
            for n, outage in enumerate(OUTAGES):
                traffic.more(100)
                down = kill()
                hold(outage, traffic.history, failures=USERS)
                up = restart()
                traffic.more(100)
                assert not traffic.unexpected, traffic.unexpected[:5]
                assert_only_unavailable(traffic.history, down, up)
                found = outage_figures(traffic.history, down, up)
                figures.record(f"{backend} stopped {outage:g} s under load (#{n + 1})",
                               backend=backend, users=USERS, **found)  # fmt: skip
                assert found["recovery_s"] is not None and found["recovery_s"] < RECOVERY, found
        assert not traffic.unexpected, traffic.unexpected[:5]
        totals = check_acknowledged(server.url, group)
        figures.record(f"{backend} stop/start: acknowledged and present", backend=backend,
                       lost=0, **totals, whole_run=traffic.history.summary())  # fmt: skip
        limits_exact(store_url, f"exact-{backend}")
        budget_exact(server.url, f"{backend[:2]}exact", BUDGET)
        assert 'status="500"' not in httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()
    clean_log(server)


def test_redis_stopped_and_started_under_load(
    own_redis: OwnRedis, tmp_path: Path, figures: Figures
) -> None:
    url = own_redis.url("rel", socket_timeout="1", connect_timeout="1", pool_timeout="1")
    _ride_out(url, tmp_path, figures, "redis", own_redis.kill, own_redis.start)


def test_postgres_stopped_and_started_under_load(
    own_postgres: OwnPostgres, tmp_path: Path, figures: Figures
) -> None:
    url = f"{own_postgres.url}?schema=rel&pool_timeout=1&connect_timeout=1"
    _ride_out(url, tmp_path, figures, "postgresql", own_postgres.kill, own_postgres.start)


def _timed(
    client: httpx.Client, path: str, headers: dict[str, str]
) -> tuple[float, httpx.Response]:
    began = time.monotonic()
    answer = client.get(path, headers=headers)
    return time.monotonic() - began, answer


def test_a_slow_store_times_out_without_stalling_the_loop(
    own_redis: OwnRedis, tmp_path: Path, figures: Figures
) -> None:
    with FaultProxy(own_redis.port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0?key_prefix=slow&socket_timeout=0.5"
        server = start(url, tmp_path, **TRAFFIC_SETTINGS)
        try:
            group = members(server.url, "slow", 4)
            proxy.delay = 3.0  # every reply of the store now comes 3 s late
            with ThreadPoolExecutor(12) as pool, httpx.Client(base_url=server.url) as probe:
                stuck = [pool.submit(_slow_reads, server.url, m.auth, 3) for m in group * 2]
                health = [_timed(probe, "/v1/health", {}) for _ in range(40)]
                store = [answer for future in stuck for answer in future.result()]
            proxy.delay = 0.0
            back = time.monotonic()
            with httpx.Client(base_url=server.url, timeout=10) as client:
                wait_until(
                    lambda: client.get("/v1/budget", headers=group[0].auth).is_success,
                    timeout=RECOVERY, what="a read once the store is fast again",
                )  # fmt: skip
            recovered = time.monotonic() - back
        finally:
            server.stop()
    health_times = sorted(t for t, _ in health)
    store_times = sorted(t for t, _ in store)
    figures.record(
        "redis replies delayed 3 s (socket_timeout 0.5 s)", backend="redis",
        store_requests=len(store), store_statuses=dict(Counter(a.status_code for _, a in store)),
        store_slowest_s=round(store_times[-1], 3),
        store_p50_s=round(store_times[len(store) // 2], 3),
        health_requests=len(health), health_slowest_s=round(health_times[-1], 4),
        health_p50_s=round(health_times[len(health) // 2], 4), recovery_s=round(recovered, 3),
    )  # fmt: skip
    for _, answer in store:
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "store_unavailable"
        assert answer.headers["Retry-After"] == "1"
    assert all(answer.status_code == 200 for _, answer in health)
    assert store_times[-1] < SLOW_BOUND, store_times[-1]
    assert health_times[-1] < 0.25, health_times[-5:]  # the loop never stalled
    clean_log(server)


def _slow_reads(url: str, auth: dict[str, str], count: int) -> list[tuple[float, httpx.Response]]:
    with httpx.Client(base_url=url, timeout=30) as client:
        return [_timed(client, "/v1/budget", auth) for _ in range(count)]
