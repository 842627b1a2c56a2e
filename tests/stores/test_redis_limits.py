"""The Redis store's rate-limit decisions: coalesced script calls, the kept connection.

Concurrent ``gcra`` calls share script calls (``GcraLane``): each decision stays exact, atomic
and all or none, a lone call is sent at once, a failed call fails each of its callers and is
never sent again. Decisions run on a connection kept from the pool (``Lease``), which the
pool takes back when others need it, and which is replaced when the server closed it.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
import redis.exceptions

from sessionward import FakeClock, StorageError, StorageUnavailable
from sessionward.stores import create_store
from sessionward.stores.records import GcraCheck, GcraResult
from sessionward.stores.redis import RedisStore
from sessionward.stores.redis.connection import pack_command
from sessionward.testing import wait_until_async
from sessionward.testing.races import race
from tests.stores.test_redis_store import RoundTrips, prefix

pytestmark = pytest.mark.anyio
BACKEND = "redis"  # tests/stores/conftest.py: url, clock, store, raw

HOUR = 3600.0


@pytest.fixture
async def store(url: str) -> AsyncIterator[RedisStore]:
    opened = create_store(url)  # the server's clock: decisions share one TIME per call
    assert isinstance(opened, RedisStore)
    await opened.open()
    yield opened
    await opened.aclose()


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> RoundTrips:
    return RoundTrips(monkeypatch)


def per_hour(key: str, n: int, cost: float = 1) -> GcraCheck:
    """n an hour, all at once (capacity n periods): the n-th is the last allowed."""
    return GcraCheck(key, period=HOUR / n, capacity=HOUR, cost=cost)


def decisions_in(packet: bytes) -> int:
    """How many decisions one EVALSHA carried (ARGV: one per decision)."""
    parts = re.findall(rb"\$\d+\r\n(.*?)\r\n", packet, re.DOTALL)
    assert parts[0].upper() == b"EVALSHA"
    return len(parts) - 3 - int(parts[2])


def evalshas(round_trips: RoundTrips) -> list[int]:
    """The decisions carried by each EVALSHA sent, in order."""
    sent = zip(round_trips.packets, round_trips.sent, strict=True)
    return [decisions_in(packet) for packet, names in sent if names == ["EVALSHA"]]


async def warm(store: RedisStore) -> None:
    """Take the kept connection and open the pool's other one, so that no handshake counts."""
    await store.gcra([GcraCheck("warm", 1.0, 1.0, 0)], apply=False)
    await store.ping()


# coalescing


async def test_coalesced_decisions_stay_exact_under_200_tasks(
    store: RedisStore, round_trips: RoundTrips
) -> None:
    await warm(store)
    round_trips.reset()
    hot = [partial(store.gcra, [per_hour("hot", 50)]) for _ in range(200)]
    outcomes = await race(hot)
    assert all(isinstance(o, GcraResult) for o in outcomes)
    assert sum(o.allowed[0] for o in outcomes) == 50
    carried = evalshas(round_trips)
    assert sum(carried) == 200  # every decision sent once
    assert len(carried) < 200 / 10  # in far fewer calls than decisions
    assert round_trips.sent == [["EVALSHA"]] * len(carried)  # nothing but those calls
    # the TATs handed out are those of decisions made one after another (calls a moment apart)
    tats = sorted(o.tats[0] - o.now for o in outcomes)
    assert tats[:50] == pytest.approx([HOUR / 50 * n for n in range(1, 51)], abs=0.1)


async def test_each_key_of_many_stays_exact_and_policies_stay_all_or_none(
    store: RedisStore,
) -> None:
    # 10 keys, 5 an hour each, and a shared 30 an hour: 40 tasks a key, all at once
    calls = [
        partial(store.gcra, [per_hour(f"k{n % 10}", 5), per_hour("shared", 30)]) for n in range(400)
    ]
    outcomes = await race(calls)
    assert sum(all(o.allowed) for o in outcomes) == 30  # the shared limit binds first
    per_key = {n: sum(all(o.allowed) for o in outcomes[n::10]) for n in range(10)}
    assert all(count <= 5 for count in per_key.values())
    # a refused decision consumed nothing: the shared key holds exactly 30 decisions
    peek = await store.gcra([per_hour("shared", 30, cost=0)], apply=False)
    assert peek.tats[0] - peek.now == pytest.approx(HOUR, abs=1)


async def test_a_lone_decision_is_sent_at_once_in_a_call_of_its_own(
    store: RedisStore, round_trips: RoundTrips
) -> None:
    await warm(store)
    round_trips.reset()
    seen_when_started: list[int] = []

    async def first_other_task() -> None:
        seen_when_started.append(len(round_trips.sent))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(first_other_task)  # runs at the decision's first wait, not before
        decided = await store.gcra([per_hour("lone", 5)])
    assert decided.allowed == (True,)
    assert seen_when_started == [1]  # written before the caller first let another task run
    assert round_trips.sent == [["EVALSHA"]] and evalshas(round_trips) == [1]
    for n in range(3):  # one after another: one call each, never waiting for company
        round_trips.reset()
        await store.gcra([per_hour(f"seq{n}", 5)])
        assert evalshas(round_trips) == [1]


async def test_at_most_one_round_trip_per_decision_in_waves(
    store: RedisStore, round_trips: RoundTrips
) -> None:
    await warm(store)
    round_trips.reset()
    decided = 0

    async def worker(n: int) -> None:
        nonlocal decided
        for i in range(25):
            await store.gcra([per_hour(f"w{n}:{i % 5}", 1000)])
            decided += 1

    async with anyio.create_task_group() as tasks:
        for n in range(32):
            tasks.start_soon(worker, n)
    carried = evalshas(round_trips)
    assert decided == sum(carried) == 800
    assert len(round_trips.sent) == len(carried) <= 800 / 8  # 32 callers: calls of many


async def test_peeks_and_decisions_go_in_separate_calls_in_arrival_order(
    store: RedisStore, round_trips: RoundTrips
) -> None:
    await warm(store)
    check = per_hour("mixed", 100)
    calls = [partial(store.gcra, [check], apply=n % 10 != 9) for n in range(100)]
    round_trips.reset()
    outcomes = await race(calls)
    assert all(all(o.allowed) for o in outcomes)
    # 90 decisions stored; each peek saw what was stored before it, never a later one
    final = await store.gcra([per_hour("mixed", 100, cost=0)], apply=False)
    assert final.tats[0] - final.now == pytest.approx(HOUR / 100 * 90, abs=1)
    peeks = [o.tats[0] - o.now for n, o in enumerate(outcomes) if n % 10 == 9]
    assert peeks == sorted(peeks)
    assert sum(evalshas(round_trips)) == 100 + 1


async def test_one_decisions_failure_leaves_the_others_of_its_call(
    store: RedisStore, url: str, raw: aioredis.Redis, round_trips: RoundTrips
) -> None:
    await raw.rpush(f"{prefix(url)}:rl:listed", "not a TAT")  # GET on it fails in the script
    await warm(store)
    round_trips.reset()
    calls = [partial(store.gcra, [per_hour(f"fine{n}", 5)]) for n in range(10)]
    calls[4] = partial(store.gcra, [per_hour("fine4", 5), per_hour("listed", 5)])
    outcomes = await race(calls)
    assert len(evalshas(round_trips)) < 10  # they did share calls
    failed = outcomes.pop(4)
    assert isinstance(failed, StorageError) and not isinstance(failed, StorageUnavailable)
    assert isinstance(failed.__cause__, redis.exceptions.ResponseError)
    assert "WRONGTYPE" in str(failed)
    assert all(isinstance(o, GcraResult) and o.allowed == (True,) for o in outcomes)
    stored = {key async for key in raw.scan_iter(match=f"{prefix(url)}:rl:fine*")}
    assert len(stored) == 9  # the failed decision stored nothing, even its good key
    with pytest.raises(StorageError, match="WRONGTYPE"):  # alone, the same error
        await store.gcra([per_hour("listed", 5)])


async def test_decisions_run_again_after_a_script_flush(
    store: RedisStore, raw: aioredis.Redis
) -> None:
    await store.gcra([per_hour("flushed", 2)])
    await raw.script_flush()
    decided = await store.gcra([per_hour("flushed", 2)])  # NOSCRIPT: loaded, then run once
    assert decided.allowed == (True,)
    assert (await store.gcra([per_hour("flushed", 2)])).allowed == (False,)


async def test_an_injected_clock_is_each_decisions_own(url: str) -> None:
    clock = FakeClock()
    start = clock.now()
    store = create_store(url, clock=clock)
    await store.open()
    check = GcraCheck("clocked", period=10.0, capacity=100.0, cost=1)

    async def later() -> GcraResult:
        clock.advance(1)  # each decision at a time of its own, in one call but the first
        return await store.gcra([check])

    try:
        outcomes = await race([later] * 5)
    finally:
        await store.aclose()
    assert [o.now for o in outcomes] == [start + n for n in range(1, 6)]
    assert [o.tats[0] for o in outcomes] == [start + 1 + 10 * n for n in range(1, 6)]


@pytest.mark.parametrize("seed", range(3))
async def test_concurrent_decisions_equal_the_same_made_one_by_one(
    url: str, seed: int, round_trips: RoundTrips
) -> None:
    """32 tasks decide at once, coalesced; the memory store, deciding the same calls one by
    one in the order they were made, answers each the same (on a 30 s grid, so that no TTL
    fires while the fake clock stands)."""
    clock = FakeClock()
    store, reference = create_store(url, clock=clock), create_store("memory://", clock=clock)
    await store.open()
    rng = random.Random(seed)
    made: list[tuple[list[GcraCheck], bool, list[GcraResult]]] = []

    def check() -> GcraCheck:
        return GcraCheck(
            rng.choice(["a", "b", "c", "{u:d}"]), period=rng.choice([30.0, 60.0, 90.0]),
            capacity=rng.choice([0.0, 30.0, 90.0, 300.0]), cost=rng.choice([-3, -1, 0, 1, 1, 2]),
        )  # fmt: skip

    async def caller() -> None:
        for _ in range(15):
            checks, apply = [check() for _ in range(rng.randint(0, 3))], rng.random() < 0.8
            answer: list[GcraResult] = []
            made.append((checks, apply, answer))  # in the order the calls were made
            answer.append(await store.gcra(checks, apply=apply))

    try:
        async with anyio.create_task_group() as tasks:
            for _ in range(32):
                tasks.start_soon(caller)
    finally:
        await store.aclose()
    assert sum(evalshas(round_trips)) == len(made) == 480
    assert len(evalshas(round_trips)) < 480 / 2  # coalesced (a peek breaks a run: own calls)
    for n, (checks, apply, answer) in enumerate(made):
        assert answer == [await reference.gcra(checks, apply=apply)], n


# failures


class SilentRedis:
    """A server that completes redis-py's handshake and never answers anything else; it
    records every command it gets, and every connection."""

    def __init__(self) -> None:
        self.commands: list[list[bytes]] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> SilentRedis:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def sent(self, name: bytes) -> list[list[bytes]]:
        return [command for command in self.commands if command[0].upper() == name]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            while True:
                header = await reader.readline()
                if not header:
                    return
                command = []
                for _ in range(int(header[1:])):
                    size = int((await reader.readline())[1:])
                    command.append((await reader.readexactly(size + 2))[:-2])
                self.commands.append(command)
                if command[0].upper() in (b"CLIENT", b"SELECT"):
                    writer.write(b"+OK\r\n")
        except (ConnectionError, asyncio.IncompleteReadError):
            return


def decisions_of(command: list[bytes]) -> int:
    return len(command) - 3 - int(command[2])


async def test_a_failed_call_fails_each_of_its_callers_and_is_never_sent_again() -> None:
    async with SilentRedis() as server:
        store = create_store(f"redis://127.0.0.1:{server.port}/0?socket_timeout=0.3")
        try:
            started = time.perf_counter()
            calls = [partial(store.gcra, [per_hour(f"k{n}", 5)]) for n in range(20)]
            outcomes = await race(calls)
            spent = time.perf_counter() - started
        finally:
            await store.aclose()
    assert all(isinstance(o, StorageUnavailable) for o in outcomes)
    assert all(isinstance(o.__cause__, redis.exceptions.TimeoutError) for o in outcomes)
    assert len({id(o) for o in outcomes}) == 20  # an exception of its own for each caller
    # the first alone, the 19 that queued meanwhile in one call; neither was sent again
    assert [decisions_of(c) for c in server.sent(b"EVALSHA")] == [1, 19]
    assert 0.55 < spent < 3  # two socket timeouts, one after the other: kept by the watchdog


async def test_a_timed_out_call_of_peeks_is_not_repeated() -> None:
    async with SilentRedis() as server:
        store = create_store(f"redis://127.0.0.1:{server.port}/0?socket_timeout=0.1")
        try:
            calls = [partial(store.gcra, [per_hour(f"k{n}", 5)], apply=False) for n in range(5)]
            outcomes = await race(calls)
        finally:
            await store.aclose()
    assert all(isinstance(o, StorageUnavailable) for o in outcomes)
    # a timeout already took the whole socket_timeout: the lone one once, then the 4 queued
    # meanwhile together, once (a peek would be safe to repeat, but not worth another wait)
    assert [decisions_of(c) for c in server.sent(b"EVALSHA")] == [1, 4]


async def test_a_decision_cut_off_by_its_caller_leaves_the_store_usable(
    store: RedisStore, url: str
) -> None:
    await warm(store)
    with anyio.move_on_after(0):  # cancelled while its reply is on the way
        await store.gcra([per_hour("cut", 5)])
    outcomes = await race([partial(store.gcra, [per_hour("cut", 5)]) for _ in range(10)])
    assert sum(o.allowed[0] for o in outcomes) in (4, 5)  # the cut one may have counted


async def test_closing_fails_queued_decisions_instead_of_leaving_them(url: str) -> None:
    store = create_store(url)
    await store.open()
    results: list[Any] = []

    async def decide(n: int) -> None:
        try:
            results.append(await store.gcra([per_hour(f"c{n}", 5)]))
        except StorageUnavailable as exc:
            results.append(exc)

    async with anyio.create_task_group() as tasks:
        for n in range(10):
            tasks.start_soon(decide, n)
        await anyio.sleep(0)  # one decision in flight, nine queued
        await store.aclose()
    assert len(results) == 10
    assert all(isinstance(r, StorageUnavailable) for r in results)
    assert isinstance(store, RedisStore)
    pool: Any = store._pool
    connections = [*pool._available_connections, *pool._in_use_connections]
    assert not [conn for conn in connections if conn.is_connected]


# the kept connection


async def test_the_pool_takes_the_kept_connection_back_when_others_need_it(url: str) -> None:
    store = create_store(f"{url}&max_connections=1&pool_timeout=1")
    assert isinstance(store, RedisStore)
    await store.open()
    try:
        await store.gcra([per_hour("k", 5)])  # keeps the only connection
        assert store._lease.kept_idle
        stats = store.pool_stats()  # kept, but idle: shown as idle
        assert (stats.in_use, stats.idle, stats.waiting) == (0, 1, 0)
        await store.ping()  # a caller that would wait takes it back at once
        assert (await store.gcra([per_hour("k", 5)])).allowed == (True,)
        # all at once, each side several times: nobody waits out the pool's timeout
        started = time.perf_counter()
        calls = [partial(store.gcra, [per_hour("k", 100)]) for _ in range(20)]
        outcomes = await race([*calls, *[store.ping] * 20])
        assert not [o for o in outcomes if isinstance(o, Exception)]
        assert time.perf_counter() - started < 1
    finally:
        await store.aclose()


async def test_a_kept_connection_closed_by_the_server_is_replaced_unseen(
    store: RedisStore, raw: aioredis.Redis
) -> None:
    await store.gcra([per_hour("k", 5)])
    own = await store._lease.call(pack_command("CLIENT", "ID"))
    await raw.client_kill_filter(_id=own)

    async def gone() -> bool:  # the server has closed it: its close is on the way to us
        return all(int(c["id"]) != own for c in await raw.client_list())

    await wait_until_async(gone, timeout=5, what="the server closing the connection")
    decided = await store.gcra([per_hour("k", 5)])  # sent on a new connection, once
    assert decided.allowed == (True,)
    assert await store._lease.call(pack_command("CLIENT", "ID")) != own
    tat = await store.gcra([per_hour("k", 5, cost=0)], apply=False)
    assert tat.tats[0] - tat.now == pytest.approx(2 * HOUR / 5, abs=1)  # two decisions, no more
