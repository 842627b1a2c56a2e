"""Fixtures of the reliability suite: sizes, the figures it records, servers of its own.

Every test here carries the ``reliability`` marker and runs in ``make test`` at a small
size; ``SESSIONWARD_RELIABILITY_FULL=1`` runs it full size. Each test records its figures
with ``figures.record(name, **values)``: one JSON line per fault, printed and appended to
``$SESSIONWARD_RELIABILITY_OUT/figures.jsonl`` when that directory is set (docs/reliability.md
is written from those lines).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.servers import OwnPostgres, OwnRedis

FULL = os.environ.get("SESSIONWARD_RELIABILITY_FULL", "") == "1"


def size(small: float, full: float) -> float:
    """The default size, or the full one under SESSIONWARD_RELIABILITY_FULL=1."""
    return full if FULL else small


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)


@dataclass
class Figures:
    test: str
    out: Path | None

    def record(self, fault: str, **values: Any) -> None:
        line = json.dumps({"test": self.test, "fault": fault, "full": FULL, **values},
                          sort_keys=True, default=str)  # fmt: skip
        print(f"RELIABILITY {line}")
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / "figures.jsonl", "a") as f:
                f.write(line + "\n")


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    out = os.environ.get("SESSIONWARD_RELIABILITY_OUT")
    return Figures(request.node.nodeid, Path(out) if out else None)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = OwnRedis(workdir)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    server = OwnPostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.destroy()
