"""The backend conformance suite, on every backend against real servers."""

from __future__ import annotations

import pytest

from sessionward.testing import (
    BudgetConformance,
    BudgetProcessConformance,
    BudgetRaceConformance,
    CapacityConformance,
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
from tests.conftest import SHARED_BACKENDS


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
    @pytest.fixture(params=SHARED_BACKENDS)
    def backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)


class TestBudgets(BudgetConformance):
    pass


class TestBudgetRaces(BudgetRaceConformance):
    pass


class TestBudgetProcesses(BudgetProcessConformance):
    @pytest.fixture(params=SHARED_BACKENDS)
    def backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)


class TestJobStores(JobStoreConformance):
    pass


class TestJobProcesses(JobProcessConformance):
    @pytest.fixture(params=SHARED_BACKENDS)
    def backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)


class TestCapacity(CapacityConformance):
    pass
