"""The backend conformance suite, on every backend against real servers, and on a local
Redis Cluster (``redis-cluster``: 6 processes, see tests/cluster.py)."""

from __future__ import annotations

import pytest

from sessionward.testing import (
    BudgetConformance,
    BudgetProcessConformance,
    BudgetRaceConformance,
    JobProcessConformance,
    JobStoreConformance,
    LimitConformance,
    ProcessRaceConformance,
    RaceConformance,
    RefreshConformance,
    SessionConformance,
    StateConformance,
    UserConformance,
)
from tests.conftest import BACKENDS, SHARED_BACKENDS

CONFORMANCE_BACKENDS = [*BACKENDS, "redis-cluster"]
PROCESS_BACKENDS = [*SHARED_BACKENDS, "redis-cluster"]


@pytest.fixture(params=CONFORMANCE_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class TestSessions(SessionConformance):
    pass


class TestState(StateConformance):
    pass


class TestRaces(RaceConformance):
    pass


class TestUsers(UserConformance):
    pass


class TestRefresh(RefreshConformance):
    pass


class TestLimits(LimitConformance):
    pass


class TestProcessRaces(ProcessRaceConformance):
    @pytest.fixture(params=PROCESS_BACKENDS)
    def backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)


class TestBudgets(BudgetConformance):
    pass


class TestBudgetRaces(BudgetRaceConformance):
    pass


class TestBudgetProcesses(BudgetProcessConformance):
    @pytest.fixture(params=PROCESS_BACKENDS)
    def backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)


class TestJobStores(JobStoreConformance):
    pass


class TestJobProcesses(JobProcessConformance):
    @pytest.fixture(params=PROCESS_BACKENDS)
    def backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)
