"""Memory store specifics: the LRU cap, and refusal to be shared across processes."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable

import pytest

from sessionward import ConfigurationError, FakeClock, open_ward
from sessionward.stores import create_store
from sessionward.stores.memory import MemoryStore
from sessionward.stores.records import ByToken, NewSessionRow

pytestmark = pytest.mark.anyio


def _new(n: int) -> NewSessionRow:
    return NewSessionRow(f"s{n}", f"u{n}", f"h{n}", 1800, 43200, None, None, "{}")


async def test_entries_are_capped_least_recently_used_first() -> None:
    store = create_store("memory://?max_entries=100", clock=FakeClock())
    assert isinstance(store, MemoryStore)
    await store.open()
    for n in range(10_000):
        await store.create_session(_new(n), max_sessions=10, evict_oldest=True)
        if n == 50:
            await store.find_session(ByToken("h0"), touch_interval=None)  # keep s0 warm
    assert len(store) == 100
    assert (await store.find_session(ByToken("h9999"), touch_interval=None)).row is not None
    assert (await store.find_session(ByToken("h1"), touch_interval=None)).row is None


async def test_state_documents_count_against_the_cap() -> None:
    async with open_ward("memory://?max_entries=10", sweep=False) as ward:
        scope = (await ward.sessions.create("alice")).session.scope()
        for n in range(50):
            await ward.state.put(scope, f"doc{n}", n)
        assert len(await ward.state.names(scope)) <= 10
        assert (await ward.state.get(scope, "doc49")) is not None


def in_fork(use: Callable[[MemoryStore], object], store: MemoryStore) -> str:
    """Run ``use(store)`` in a forked child: ``"used"``, or its ConfigurationError's message."""
    fork = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[str] = fork.Queue()
    child = fork.Process(target=_use_in_child, args=(use, store, results))
    child.start()
    message = results.get(timeout=60)
    child.join(60)
    return message


def _use_in_child(use: Callable[[MemoryStore], object], store: MemoryStore,
                  results: multiprocessing.Queue[str]) -> None:  # fmt: skip
    try:
        use(store)
        results.put("used")
    except ConfigurationError as exc:
        results.put(str(exc))


async def test_refuses_to_be_used_after_fork() -> None:
    import anyio

    store = create_store("memory://")
    assert isinstance(store, MemoryStore)
    message = in_fork(lambda inherited: anyio.run(inherited.list_sessions, "alice"), store)
    assert "cannot be shared across processes" in message
