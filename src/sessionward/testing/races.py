"""Races every backend must win: lost updates, revoke-versus-write, caps, rotation.

Each race releases all contenders together and then asserts exact counts. The process races
run their contenders in two spawned OS processes against one shared store.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Literal

import anyio
import anyio.lowlevel
import pytest

from ..clock import FakeClock
from ..config import Settings
from ..errors import SessionLimitExceeded, SessionRevoked, UnknownSession, WriteConflict
from ..stores.records import StateScope
from ..sync import SyncWard
from ..ward import Ward, open_ward
from .conformance import TOUCH, WardFixtures

Outcome = Literal["ok", "conflict"]
WRITERS = 50
REVOKE_ROUNDS = 200


async def read_modify_write(ward: Ward, scope: StateScope, writer: int, retry: bool) -> Outcome:
    """Append ``writer`` to the document's list under compare-and-set."""
    while True:
        doc = await ward.state.get(scope, "doc")
        assert doc is not None
        try:
            await ward.state.put(scope, "doc", [*doc.data, writer], expected_version=doc.version)
        except WriteConflict:
            if not retry:
                return "conflict"
        else:
            return "ok"


async def race(contenders: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Start every contender at the same moment; return their results (or exceptions)."""
    start = anyio.Event()
    results: list[Any] = [None] * len(contenders)

    async def run(i: int) -> None:
        await start.wait()
        try:
            results[i] = await contenders[i]()
        except Exception as exc:
            results[i] = exc

    async with anyio.create_task_group() as tasks:
        for i in range(len(contenders)):
            tasks.start_soon(run, i)
        await anyio.lowlevel.checkpoint()
        start.set()
    return results


def assert_no_lost_update(final: list[int], version: int, outcomes: list[Outcome]) -> None:
    winners = sorted(i for i, outcome in enumerate(outcomes) if outcome == "ok")
    assert sorted(final) == winners, "a successful write was lost"
    assert len(final) == len(set(final)), "a write was applied twice"
    assert version == 1 + len(winners)
    assert outcomes.count("ok") + outcomes.count("conflict") == len(outcomes)


class RaceConformance(WardFixtures):
    @pytest.mark.parametrize("retry", [False, True], ids=["once", "until-done"])
    async def test_lost_update_tasks(self, ward: Ward, retry: bool) -> None:
        scope = (await ward.sessions.create("racer")).session.scope()
        await ward.state.put(scope, "doc", [])
        contenders = [lambda i=i: read_modify_write(ward, scope, i, retry) for i in range(WRITERS)]
        outcomes = await race(contenders)
        doc = await ward.state.get(scope, "doc")
        assert doc is not None
        assert_no_lost_update(doc.data, doc.version, outcomes)
        if retry:
            assert sorted(doc.data) == list(range(WRITERS))

    async def test_revoke_races_touch_and_write(self, ward: Ward, clock: FakeClock) -> None:
        for _ in range(REVOKE_ROUNDS):
            new = await ward.sessions.create("racer")
            scope = new.session.scope("session")
            await ward.state.put(scope, "doc", 0)
            clock.advance(TOUCH)  # so the racing validate writes its touch
            sid = new.session.session_id
            await race([
                partial(ward.sessions.revoke, "racer", sid),
                partial(ward.sessions.validate, new.token),
                partial(ward.state.put, scope, "doc", 1),
            ])  # fmt: skip
            with pytest.raises(SessionRevoked):
                await ward.sessions.validate(new.token)
            assert await ward.state.names(scope) == []
            with pytest.raises(SessionRevoked):
                await ward.state.put(scope, "doc", 2)

    async def test_cap_holds_under_concurrent_creates(
        self, store_url: str, clock: FakeClock
    ) -> None:
        settings = Settings(sessions_per_user=3, session_limit_action="refuse")
        async with open_ward(store_url, settings=settings, clock=clock, sweep=False) as ward:
            outcomes = await race([lambda: ward.sessions.create("racer")] * 20)
            refused = [o for o in outcomes if isinstance(o, SessionLimitExceeded)]
            assert (20 - len(refused), len(refused)) == (3, 17)
            assert len(await ward.sessions.list_active("racer")) == 3

    async def test_evicting_cap_holds_under_concurrent_creates(self, ward: Ward) -> None:
        outcomes = await race([lambda: ward.sessions.create("racer")] * 20)
        assert not [o for o in outcomes if isinstance(o, Exception)]
        assert len(await ward.sessions.list_active("racer")) == 3

    async def test_one_rotation_wins(self, ward: Ward) -> None:
        new = await ward.sessions.create("racer")
        outcomes = await race([lambda: ward.sessions.rotate(new.token)] * 10)
        winners = [o for o in outcomes if not isinstance(o, Exception)]
        assert len(winners) == 1
        assert all(isinstance(o, UnknownSession) for o in outcomes if o not in winners)
        await ward.sessions.validate(winners[0].token)

    def test_lost_update_threads(self, store_url: str, clock: FakeClock) -> None:
        threads_n = 16
        with SyncWard(store_url, clock=clock, sweep=False) as ward:
            scope = ward.sessions.create("racer").session.scope()
            ward.state.put(scope, "doc", [])
            barrier = threading.Barrier(threads_n)
            outcomes: list[Outcome] = ["conflict"] * threads_n

            def writer(i: int) -> None:
                barrier.wait()
                while True:
                    doc = ward.state.get(scope, "doc")
                    assert doc is not None
                    try:
                        ward.state.put(scope, "doc", [*doc.data, i], expected_version=doc.version)
                    except WriteConflict:
                        continue
                    outcomes[i] = "ok"
                    return

            threads = [threading.Thread(target=writer, args=(i,)) for i in range(threads_n)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            doc = ward.state.get(scope, "doc")
            assert doc is not None
            assert sorted(doc.data) == list(range(threads_n))
            assert_no_lost_update(doc.data, doc.version, outcomes)


class ProcessRaceConformance:
    """The races again, with the contenders split across two OS processes."""

    pytestmark = pytest.mark.anyio

    @pytest.mark.parametrize("retry", [False, True], ids=["once", "until-done"])
    async def test_lost_update_two_processes(self, store_url: str, retry: bool) -> None:
        async with open_ward(store_url, sweep=False) as ward:
            scope = (await ward.sessions.create("racer")).session.scope()
            await ward.state.put(scope, "doc", [])
            halves = [list(range(0, WRITERS, 2)), list(range(1, WRITERS, 2))]
            results = await run_in_processes(
                [(_lost_update_child, (store_url, scope.user_id, half, retry)) for half in halves]
            )
            outcomes: list[Outcome] = ["conflict"] * WRITERS
            for half, child in zip(halves, results, strict=True):
                for writer, outcome in zip(half, child, strict=True):
                    outcomes[writer] = outcome
            doc = await ward.state.get(scope, "doc")
            assert doc is not None
            assert_no_lost_update(doc.data, doc.version, outcomes)
            if retry:
                assert sorted(doc.data) == list(range(WRITERS))

    async def test_revoke_races_touch_and_write_two_processes(self, store_url: str) -> None:
        settings = Settings(session_touch_interval=0, sessions_per_user=REVOKE_ROUNDS)
        async with open_ward(store_url, settings=settings, sweep=False) as ward:
            made = [await ward.sessions.create("racer") for _ in range(REVOKE_ROUNDS)]
            for new in made:
                await ward.state.put(new.session.scope("session"), "doc", 0)
            sessions = [(new.token, new.session.session_id) for new in made]
            await run_in_processes([
                (_revoker_child, (store_url, sessions)),
                (_toucher_child, (store_url, sessions)),
            ])  # fmt: skip
            for new in made:
                with pytest.raises(SessionRevoked):
                    await ward.sessions.validate(new.token)
                assert await ward.state.names(new.session.scope("session")) == []


# Children of the process races. They run in spawned interpreters, so they live at module
# level, take only picklable arguments, and meet at a barrier before racing.

_SPAWN = multiprocessing.get_context("spawn")


async def run_in_processes(children: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[Any]:
    """Run each ``(fn, args)`` in its own spawned process; return their results in order."""
    timeout = 180
    barrier = _SPAWN.Barrier(len(children))
    results = _SPAWN.Queue()
    procs = [
        _SPAWN.Process(target=_child_main, args=(n, fn, (*args, barrier), results))
        for n, (fn, args) in enumerate(children)
    ]
    for proc in procs:
        proc.start()
    try:
        got = [await anyio.to_thread.run_sync(results.get, True, timeout) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
    by_child = dict(got)
    failures = [v for v in by_child.values() if isinstance(v, str)]
    assert not failures, f"a child process failed: {failures}"
    return [by_child[n] for n in range(len(procs))]


def _child_main(n: int, fn: Callable[..., Any], args: tuple[Any, ...], results: Any) -> None:
    try:
        results.put((n, anyio.run(fn, *args)))
    except BaseException as exc:
        results.put((n, f"{type(exc).__name__}: {exc}"))


async def _lost_update_child(
    url: str, user_id: str, writers: list[int], retry: bool, barrier: Any
) -> list[Outcome]:
    async with open_ward(url, sweep=False) as ward:
        scope = StateScope("user", user_id)
        await anyio.to_thread.run_sync(barrier.wait)
        outcomes = await race([partial(read_modify_write, ward, scope, w, retry) for w in writers])
    errors = [o for o in outcomes if isinstance(o, Exception)]
    if errors:
        raise errors[0]
    return outcomes


async def _revoker_child(url: str, sessions: list[tuple[str, str]], barrier: Any) -> int:
    revoked = 0
    async with open_ward(url, sweep=False) as ward:
        for _, session_id in sessions:
            await anyio.to_thread.run_sync(barrier.wait)  # lockstep: one session per round
            revoked += await ward.sessions.revoke("racer", session_id)
    return revoked


async def _toucher_child(url: str, sessions: list[tuple[str, str]], barrier: Any) -> int:
    settings = Settings(session_touch_interval=0)
    writes = 0
    async with open_ward(url, settings=settings, sweep=False) as ward:
        for token, session_id in sessions:
            scope = StateScope("session", "racer", session_id)
            await anyio.to_thread.run_sync(barrier.wait)
            outcomes = await race([
                partial(ward.sessions.validate, token),
                partial(ward.state.put, scope, "doc", 1),
            ])  # fmt: skip
            unexpected = [o for o in outcomes if isinstance(o, Exception)
                          and not isinstance(o, SessionRevoked | UnknownSession)]  # fmt: skip
            if unexpected:
                raise unexpected[0]
            writes += sum(not isinstance(o, Exception) for o in outcomes)
    return writes
