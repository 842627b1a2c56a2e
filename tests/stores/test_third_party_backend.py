"""A backend defined outside the package: registered with its own URL scheme, it passes the
same conformance suite as the built-in ones."""

from __future__ import annotations

import pytest

from sessionward.clock import Clock
from sessionward.errors import ConfigurationError
from sessionward.stores import BackendEntry, create_store, register_backend
from sessionward.stores.memory import MemoryStore
from sessionward.testing import (
    BudgetConformance,
    JobStoreConformance,
    LimitConformance,
    RaceConformance,
    RefreshConformance,
    SessionConformance,
    StateConformance,
    UserConformance,
)
from sessionward.urls import MemoryOptions, StoreURL, parse_store_url


class WrappedStore(MemoryStore):
    """The smallest third-party backend: the memory store under another name."""

    def __init__(self, url: StoreURL, *, clock: Clock | None = None) -> None:
        super().__init__(url, clock=clock)

    @property
    def backend(self) -> str:
        return "wrapped"


register_backend(
    "wrapped", BackendEntry(f"{__name__}:WrappedStore"), schemes=("wrapped",), options=MemoryOptions
)


@pytest.fixture
def store_url() -> str:
    return "wrapped://?max_entries=5000"


def test_the_scheme_parses_into_the_backend_and_its_options() -> None:
    url = parse_store_url("wrapped://?max_entries=7")
    assert (url.backend, url.scheme, url.options) == (
        "wrapped",
        "wrapped",
        MemoryOptions(max_entries=7),
    )
    store = create_store(url)
    assert isinstance(store, WrappedStore) and store.backend == "wrapped"


def test_its_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="unknown option 'nope' for a wrapped:// URL"):
        parse_store_url("wrapped://?nope=1")


def test_a_built_in_scheme_cannot_be_taken_over() -> None:
    with pytest.raises(ConfigurationError, match="built in"):
        register_backend("mine", BackendEntry(f"{__name__}:WrappedStore"), schemes=("redis",))


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


class TestBudgets(BudgetConformance):
    pass


class TestJobStore(JobStoreConformance):
    pass
