"""/metrics with two real uvicorn workers in prometheus-client's multiprocess mode: any
worker's scrape counts every worker's requests, and the gauges cover both instances."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from sessionward.testing import wait_until
from tests.conftest import url_for
from tests.service.server import Server, start

REQUESTS = 60


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[Server]:
    folder = tmp_path / "prom"
    folder.mkdir()
    (folder / "counter_99999.db").write_bytes(b"stale")  # a file a crashed run left behind
    server = start(url_for("postgresql", tmp_path), tmp_path, workers=2,
                   PROMETHEUS_MULTIPROC_DIR=str(folder), SESSIONWARD_METRICS_ACCESS="public",
                   SESSIONWARD_CAPACITY_SAMPLE_INTERVAL="0.2")  # fmt: skip
    yield server
    server.stop()
    assert "Traceback" not in server.log.read_text()


def _health_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name == "sessionward_http_requests":
            return sum(
                s.value for s in family.samples
                if s.name.endswith("_total") and s.labels["route"] == "/v1/health"
            )  # fmt: skip
    return 0.0


def _count_of_one_worker(counters: Path, scratch: Path) -> float:
    """The health requests one worker counted: its file alone, read by prometheus-client."""
    scratch.mkdir()
    shutil.copy(counters, scratch / counters.name)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(scratch))  # type: ignore[no-untyped-call]
    return _health_count(generate_latest(registry).decode())


def test_every_scrape_counts_both_workers(two_workers: Server, tmp_path: Path) -> None:
    # new connections each time, so both workers answer some of them
    for _ in range(REQUESTS):
        with httpx.Client(base_url=two_workers.url, timeout=30) as client:
            answer = client.get("/v1/health")
            assert answer.status_code == 200
    for _ in range(6):
        with httpx.Client(base_url=two_workers.url, timeout=30) as client:
            text = client.get("/metrics").text
            assert _health_count(text) == REQUESTS
    folder = Path(two_workers.env["PROMETHEUS_MULTIPROC_DIR"])
    wait_until(lambda: len({p.stem.rsplit("_", 1)[-1] for p in folder.glob("*.db")}) >= 2,
               what="files of both workers")  # fmt: skip
    pids = {p.stem.rsplit("_", 1)[-1] for p in folder.glob("*.db")}
    assert "99999" not in pids  # serve cleared the stale files before the workers started
    assert len(pids) == 2
    # both workers answered some of the requests, and every scrape summed them
    each = [
        _count_of_one_worker(path, tmp_path / path.stem)
        for path in sorted(folder.glob("counter_*.db"))
    ]
    assert len(each) == 2 and all(n > 0 for n in each) and sum(each) == REQUESTS
