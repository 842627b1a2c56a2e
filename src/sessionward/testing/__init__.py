"""Test support: :class:`FakeClock`, and the backend conformance suite.

Every backend must pass the same suite. To run it against a store of your own, subclass the
classes and provide a ``store_url`` fixture (and ``anyio_backend`` returning ``"asyncio"``):

    from sessionward.testing import SessionConformance, StateConformance

    class TestMyStore(SessionConformance, StateConformance):
        @pytest.fixture
        def store_url(self, tmp_path):
            return f"sqlite:///{tmp_path}/t.db"

Needs pytest and anyio's pytest plugin (installed with anyio).
"""

from __future__ import annotations

from ..clock import FakeClock
from .budgets import BudgetConformance, BudgetProcessConformance, BudgetRaceConformance
from .capacity import CapacityConformance
from .conformance import SessionConformance, StateConformance
from .jobs import JobProcessConformance, JobStoreConformance
from .limits import LimitConformance
from .races import ProcessRaceConformance, RaceConformance
from .users import RefreshConformance, UserConformance
from .waiting import wait_until, wait_until_async

__all__ = [
    "BudgetConformance",
    "BudgetProcessConformance",
    "BudgetRaceConformance",
    "CapacityConformance",
    "FakeClock",
    "JobProcessConformance",
    "JobStoreConformance",
    "LimitConformance",
    "ProcessRaceConformance",
    "RaceConformance",
    "RefreshConformance",
    "SessionConformance",
    "StateConformance",
    "UserConformance",
    "wait_until",
    "wait_until_async",
]
