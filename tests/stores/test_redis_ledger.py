"""What only the Redis store's ledger has: key layout, TTLs, round trips, lost replies,
exact amounts near 2**53, sums over a user's sessions, sweeps and verification.

Everything runs against the real server from ``tests/conftest.py``; time is a FakeClock.
The same results as the reference store are checked by ``test_redis_store.py``'s
differential test, whose script includes the ledger operations.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.client import Redis
from redis.crc import key_slot

from sessionward import FakeClock, StorageUnavailable
from sessionward.stores import create_store
from sessionward.stores.protocols import Store
from sessionward.stores.records import BudgetRow, ById, ChargeRequest, LedgerProblem, UserBudgetRow
from sessionward.stores.redis import RedisStore
from sessionward.stores.redis.keys import KeyLayout, encode_id
from tests.stores.test_redis_store import (
    IDLE,
    ODD_USERS,
    Listener,
    RoundTrips,
    keys_of,
    new_row,
    user_keys,
)

pytestmark = pytest.mark.anyio
BACKEND = "redis"  # tests/stores/conftest.py: url, clock, store, raw

LIMIT = 10_000
DAY_MS = 86_400_000
EXACT = 2**53


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> RoundTrips:
    return RoundTrips(monkeypatch)


def request(user: str, sid: str, amount: int, entry_id: str, key: str | None = None,
            *, ttl: float = 60.0, default: int = LIMIT) -> ChargeRequest:  # fmt: skip
    return ChargeRequest(user, sid, amount, entry_id, key, "", default, "USD", ttl)


async def session(store: Store, user: str = "alice", sid: str = "s1") -> None:
    created = await store.create_session(new_row(user, sid), max_sessions=99, evict_oldest=False)
    assert created.row is not None


def budget_keys(url: str, user: str, sid: str) -> dict[str, str]:
    base, member = user_keys(url, user), encode_id(sid)
    own = {kind: f"{base}{kind}:{member}" for kind in ("s", "b", "l", "h", "ik")}
    return {**own, "bidx": f"{base}bidx", "bcap": f"{base}bcap"}


# key layout


async def test_budget_keys_and_their_slot(store: RedisStore, url: str, raw: aioredis.Redis) -> None:
    await session(store)
    await store.set_user_budget("alice", 50_000)
    charged = await store.charge(request("alice", "s1", 250, "c1", "order-17"))
    await store.reserve(request("alice", "s1", 100, "h1"))
    keys = budget_keys(url, "alice", "s1")
    every = await keys_of(raw, url)
    # token and owner routes and the activity index sit in slots of their own
    routes = {k for k in every if ":t:" in k or ":i:" in k or ":{act}:" in k}
    assert every - routes == {*keys.values()} | {f"{user_keys(url, 'alice')}idx"}
    assert any(k.endswith(f":i:{encode_id('s1')}") for k in routes)
    kinds = ["string", "hash", "stream", "zset", "hash", "set", "string"]
    assert [await raw.type(keys[k]) for k in keys] == kinds
    assert len({key_slot(key.encode()) for key in keys.values()}) == 1
    budget = await raw.hgetall(keys["b"])
    assert budget.keys() == {"lim", "sp", "hd", "cur", "e:c1", "h:h1"}
    totals = (budget["lim"], budget["sp"], budget["hd"], budget["h:h1"])
    assert totals == ("10000", "250", "100", "100")
    [(stream_id, fields)] = await raw.xrange(keys["l"])
    assert budget["e:c1"] == stream_id
    assert fields == {"i": "c1", "k": "charge", "a": "250", "d": "", "t": "1700000000",
                      "ik": "order-17"}  # fmt: skip
    assert await raw.hgetall(keys["ik"]) == {"order-17": "c1"}
    assert await raw.smembers(keys["bidx"]) == {"s1"}
    assert await raw.get(keys["bcap"]) == "50000"  # only the cap: the sums are computed
    assert charged.user_budget == UserBudgetRow("alice", 50_000, 250, 0)


async def test_odd_ids_keep_their_budgets_apart(
    store: RedisStore, url: str, raw: aioredis.Redis
) -> None:
    for n, user in enumerate(ODD_USERS):
        await session(store, user, f"s:{{{n}}}")
        await store.set_user_budget(user, 1000 + n)
        await store.charge(request(user, f"s:{{{n}}}", n + 1, f"c{n}", "k"))
    for n, user in enumerate(ODD_USERS):
        keys = budget_keys(url, user, f"s:{{{n}}}")
        assert len({key_slot(key.encode()) for key in keys.values()}) == 1
        assert await store.get_user_budget(user) == UserBudgetRow(user, 1000 + n, n + 1, 0)
        [entry] = await store.list_charges(user, f"s:{{{n}}}", after=None, limit=10)
        assert (entry.user_id, entry.amount, entry.entry_id) == (user, n + 1, f"c{n}")
    assert await store.verify_ledger() == []


# TTLs


async def ttls(raw: aioredis.Redis, keys: dict[str, str]) -> dict[str, int]:
    return {kind: await raw.pttl(key) for kind, key in keys.items()}


async def test_budget_keys_live_as_long_as_the_session(
    store: RedisStore, url: str, raw: aioredis.Redis, clock: FakeClock
) -> None:
    await session(store)
    await store.set_user_budget("alice", 50_000)
    await store.charge(request("alice", "s1", 250, "c1", "k"))
    await store.reserve(request("alice", "s1", 100, "h1"))
    keys = budget_keys(url, "alice", "s1")
    ttl = await ttls(raw, keys)
    assert (IDLE - 60) * 1000 < ttl["s"] <= IDLE * 1000
    for kind in ("b", "l", "h", "bidx"):  # neither before the session nor after it
        assert abs(ttl[kind] - ttl["s"]) < 50, kind
    assert DAY_MS - 1000 < ttl["ik"] <= DAY_MS  # at least a day, and at most a day more
    assert ttl["bcap"] == -1  # the user's cap, like the user's record, has no TTL
    for kind in ("s", "b", "l", "h", "ik", "bidx"):
        await raw.pexpire(keys[kind], 5_000)  # as if most of the idle time had passed for real
    clock.advance(60)
    await store.find_session(ById("alice", "s1"), touch_interval=60)  # a touch re-arms them
    ttl = await ttls(raw, keys)
    for kind in ("b", "l", "h", "bidx"):
        assert abs(ttl[kind] - ttl["s"]) < 50, kind
    assert ttl["s"] > (IDLE - 60) * 1000 and DAY_MS - 1000 < ttl["ik"] <= DAY_MS


async def test_a_long_session_keeps_its_idempotency_keys_as_long(
    url: str, raw: aioredis.Redis, clock: FakeClock
) -> None:
    store = create_store(url, clock=clock)
    await store.open()
    try:
        row = replace(new_row("alice", "s1", idle=3 * 86400.0), absolute_timeout=5 * 86400.0)
        await store.create_session(row, max_sessions=9, evict_oldest=False)
        await store.charge(request("alice", "s1", 1, "c1", "k"))
        ttl = await ttls(raw, budget_keys(url, "alice", "s1"))
        assert abs(ttl["ik"] - ttl["s"]) < 50 and ttl["s"] > DAY_MS
    finally:
        await store.aclose()


async def test_a_budget_without_a_session_lives_a_day(
    store: RedisStore, url: str, raw: aioredis.Redis
) -> None:
    budget = await store.set_budget("alice", "gone", limit=500, currency="EUR")
    assert budget == BudgetRow("alice", "gone", 500, 0, 0, "EUR")
    keys = budget_keys(url, "alice", "gone")
    assert DAY_MS - 1000 < await raw.pttl(keys["b"]) <= DAY_MS
    assert DAY_MS - 1000 < await raw.pttl(keys["bidx"]) <= DAY_MS


async def test_no_immortal_budget_keys(store: RedisStore, url: str, raw: aioredis.Redis) -> None:
    for sid in ("s1", "s2"):
        await session(store, "alice", sid)
        charged = await store.charge(request("alice", sid, 250, f"c-{sid}", "k"))
        assert charged.entry is not None
        await store.refund("alice", sid, charged.entry.entry_id, f"r-{sid}")
        hold = await store.reserve(request("alice", sid, 100, f"h-{sid}"))
        assert hold.hold_id is not None
        await store.capture("alice", sid, hold.hold_id, 50, f"x-{sid}", "")
        await store.reserve(request("alice", sid, 100, f"h2-{sid}"))
    await store.set_budget("alice", "nobody", limit=5, currency="USD")
    await store.set_user_budget("alice", 9000)
    immortal = {key for key in await keys_of(raw, url) if await raw.pttl(key) == -1}
    assert immortal == {budget_keys(url, "alice", "s1")["bcap"]}


async def test_a_sweep_takes_the_budget_along(
    store: RedisStore, url: str, raw: aioredis.Redis, clock: FakeClock
) -> None:
    await session(store, "alice", "dead")
    await store.charge(request("alice", "dead", 300, "c1", "k"))
    await store.reserve(request("alice", "dead", 100, "h1", ttl=10 * IDLE))
    clock.advance(IDLE)
    await session(store, "alice", "live")
    await store.charge(request("alice", "live", 200, "c2", "k"))
    await store.set_user_budget("alice", 5000)
    assert await store.get_user_budget("alice") == UserBudgetRow("alice", 5000, 500, 100)
    assert await store.sweep_sessions(10) == 1
    assert not [key for key in await keys_of(raw, url) if key.endswith(":dead")]
    assert await raw.smembers(budget_keys(url, "alice", "dead")["bidx"]) == {"live"}
    assert await store.get_user_budget("alice") == UserBudgetRow("alice", 5000, 200, 0)
    assert await store.list_charges("alice", "dead", after=None, limit=10) == []
    assert (await store.refund("alice", "dead", "c1", "r1")).status == "unknown"
    assert (await store.release("alice", "dead", "h1")).status == "unknown"
    assert await store.verify_ledger() == []


async def test_a_budget_whose_keys_expired_leaves_the_users_sums(
    store: RedisStore, url: str, raw: aioredis.Redis
) -> None:
    for sid in ("s1", "s2"):
        await session(store, "alice", sid)
        await store.charge(request("alice", sid, 300, f"c-{sid}"))
    await store.set_user_budget("alice", 1000)
    keys = budget_keys(url, "alice", "s1")
    await raw.delete(keys["s"], keys["b"], keys["l"])  # as Redis expires them, together
    assert await store.get_user_budget("alice") == UserBudgetRow("alice", 1000, 300, 0)
    assert await raw.smembers(keys["bidx"]) == {"s2"}


# round trips


async def test_every_ledger_operation_is_one_round_trip(
    store: RedisStore, round_trips: RoundTrips
) -> None:
    await session(store)
    await store.set_user_budget("alice", 5000)
    await store.reserve(request("alice", "s1", 10, "h0"))
    await store.charge(request("alice", "s1", 10, "c0"))
    calls = [
        partial(store.charge, request("alice", "s1", 250, "c1", "k")),
        partial(store.charge, request("alice", "s1", 250, "c9", "k")),  # replayed
        partial(store.reserve, request("alice", "s1", 100, "h1")),
        partial(store.capture, "alice", "s1", "h1", 50, "c2", "scan"),
        partial(store.release, "alice", "s1", "h0"),
        partial(store.refund, "alice", "s1", "c1", "r1"),
        partial(store.get_budget, "alice", "s1", default_limit=LIMIT, currency="USD"),
        partial(store.set_budget, "alice", "s1", limit=LIMIT, currency="USD"),
        partial(store.get_user_budget, "alice"),
        partial(store.set_user_budget, "alice", 6000),
        partial(store.list_charges, "alice", "s1", after="c0", limit=10),
    ]
    for call in calls:
        round_trips.reset()
        await call()
        assert round_trips.sent == [["EVALSHA"]], call


# lost replies: a script that may have applied is never sent again


class LostReply:
    """Lets the server run the next EVALSHA, then loses its reply (the connection drops)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed = False
        self.sent = 0
        original = Redis.parse_response

        async def lossy(client: Any, conn: Any, command_name: Any, **options: Any) -> Any:
            reply = await original(client, conn, command_name, **options)
            if command_name == "EVALSHA":
                self.sent += 1
                if self.armed:
                    self.armed = False
                    raise redis.exceptions.ConnectionError("the reply was lost")
            return reply

        monkeypatch.setattr(Redis, "parse_response", lossy)


async def test_a_charge_whose_reply_was_lost_is_not_charged_twice(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await session(store)
    lost = LostReply(monkeypatch)
    lost.armed = True
    with pytest.raises(StorageUnavailable):
        await store.charge(request("alice", "s1", 250, "c1", "order-17"))
    assert lost.sent == 1  # not repeated by redis-py, nor by us
    budget = await store.get_budget("alice", "s1", default_limit=LIMIT, currency="USD")
    assert budget.spent == 250  # it did apply, once
    again = await store.charge(request("alice", "s1", 250, "c2", "order-17"))  # the caller retries
    assert again.status == "replayed" and again.entry is not None and again.entry.entry_id == "c1"
    assert again.budget is not None and again.budget.spent == 250
    lost.armed = True
    with pytest.raises(StorageUnavailable):
        await store.reserve(request("alice", "s1", 100, "h1"))
    assert lost.sent == 4
    assert (await store.get_budget("alice", "s1", default_limit=0, currency="")).held == 100
    entries = await store.list_charges("alice", "s1", after=None, limit=9)
    assert [(e.entry_id, e.amount) for e in entries] == [("c1", 250)]
    assert await store.verify_ledger() == []


async def test_a_sweep_whose_reply_was_lost_is_not_repeated(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    await session(store)
    await store.reserve(request("alice", "s1", 100, "h1", ttl=10))
    clock.advance(10)
    lost = LostReply(monkeypatch)
    lost.armed = True
    with pytest.raises(StorageUnavailable):
        await store.sweep_holds(10)
    assert lost.sent == 1
    assert await store.sweep_holds(10) == 0  # the lost sweep did release it
    assert (await store.get_budget("alice", "s1", default_limit=0, currency="")).held == 0
    assert await store.verify_ledger() == []


@pytest.mark.parametrize("call", ["charge", "reserve", "refund", "capture", "release"])
async def test_a_ledger_script_that_may_have_applied_is_sent_once(
    listener: Listener, call: str
) -> None:
    url = f"redis://127.0.0.1:{listener.port}/0?socket_timeout=0.2"
    store = create_store(url, clock=FakeClock())
    calls = {
        "charge": partial(store.charge, request("alice", "s1", 1, "c1", "k")),
        "reserve": partial(store.reserve, request("alice", "s1", 1, "h1")),
        "refund": partial(store.refund, "alice", "s1", "c1", "r1"),
        "capture": partial(store.capture, "alice", "s1", "h1", 1, "c2", ""),
        "release": partial(store.release, "alice", "s1", "h1"),
    }
    try:
        with pytest.raises(StorageUnavailable):
            await calls[call]()
        assert listener.connections() == 1  # a repetition could charge, hold or free twice
        with pytest.raises(StorageUnavailable):
            await store.get_budget("alice", "s1", default_limit=1, currency="USD")
        # a read that timed out is not repeated either: the timeout took its whole bound
        assert listener.connections() == 1 + 1
    finally:
        await store.aclose()


@pytest.fixture
def listener() -> Iterator[Listener]:
    listening = Listener()
    yield listening
    listening.close()


# exact amounts


async def test_amounts_near_2_53_stay_exact(
    store: RedisStore, url: str, raw: aioredis.Redis
) -> None:
    await session(store)
    await store.set_budget("alice", "s1", limit=EXACT, currency="USD")
    first = await store.charge(request("alice", "s1", EXACT - 1, "c1", "k"))
    assert first.budget == BudgetRow("alice", "s1", EXACT, EXACT - 1, 0, "USD")
    assert (await store.charge(request("alice", "s1", 2, "c2"))).status == "exceeded"
    assert (await store.charge(request("alice", "s1", EXACT - 1, "c3", "k"))).status == "replayed"
    assert (await store.charge(request("alice", "s1", EXACT - 2, "c3", "k"))).status == "mismatch"
    last = await store.charge(request("alice", "s1", 1, "c4"))
    assert last.budget is not None and last.budget.spent == EXACT
    assert await raw.hget(budget_keys(url, "alice", "s1")["b"], "sp") == str(EXACT)
    refund = await store.refund("alice", "s1", "c1", "r1")
    assert refund.entry is not None and refund.entry.amount == -(EXACT - 1)
    hold = await store.reserve(request("alice", "s1", EXACT - 1, "h1"))
    assert hold.budget == BudgetRow("alice", "s1", EXACT, 1, EXACT - 1, "USD")
    amounts = [e.amount for e in await store.list_charges("alice", "s1", after=None, limit=9)]
    assert amounts == [EXACT - 1, 1, -(EXACT - 1)]
    assert await store.verify_ledger() == []


async def test_a_users_sums_stay_exact_past_2_53(store: RedisStore) -> None:
    for sid in ("s1", "s2"):
        await session(store, "alice", sid)
        await store.set_budget("alice", sid, limit=EXACT, currency="USD")
    await store.charge(request("alice", "s1", EXACT - 1, "c1"))
    await store.charge(request("alice", "s2", 2, "c2"))
    # the user's sum is 2**53 + 1: in doubles it would round to 2**53 and take this cap
    assert await store.set_user_budget("alice", EXACT) is None
    await store.refund("alice", "s2", "c2", "r2")
    capped = await store.set_user_budget("alice", EXACT)
    assert capped == UserBudgetRow("alice", EXACT, EXACT - 1, 0)
    await store.refund("alice", "s1", "c1", "r1")
    hold = await store.reserve(request("alice", "s2", EXACT - 4, "h1"))
    assert hold.user_budget == UserBudgetRow("alice", EXACT, 0, EXACT - 4)
    refused = await store.charge(request("alice", "s1", 5, "c3"))
    assert refused.status == "user_exceeded" and refused.user_budget is not None
    assert refused.user_budget.remaining == 4
    charged = await store.charge(request("alice", "s1", 4, "c4"))
    assert charged.user_budget == UserBudgetRow("alice", EXACT, 4, EXACT - 4)
    assert await store.verify_ledger() == []


async def test_amounts_lua_cannot_hold_exactly_are_refused(store: RedisStore) -> None:
    await session(store)
    with pytest.raises(ValueError, match="2\\*\\*53"):
        await store.charge(request("alice", "s1", EXACT + 1, "c1"))
    with pytest.raises(ValueError, match="2\\*\\*53"):
        await store.set_user_budget("alice", EXACT + 1)


# holds, refunds, verification


async def test_expired_holds_go_lazily_or_by_sweep(
    store: RedisStore, url: str, raw: aioredis.Redis, clock: FakeClock
) -> None:
    for user in ("alice", "bob"):
        await session(store, user, "s1")
    await store.reserve(request("alice", "s1", 100, "h1", ttl=10))
    await store.reserve(request("alice", "s1", 200, "h2", ttl=20))
    await store.reserve(request("bob", "s1", 300, "h3", ttl=10))
    clock.advance(10)  # h1 and h3 expire now (expires_at <= now)
    holds = budget_keys(url, "alice", "s1")["h"]
    assert await raw.zrange(holds, 0, -1) == ["h1", "h2"]  # nothing runs by itself
    budget = await store.get_budget("alice", "s1", default_limit=LIMIT, currency="USD")
    assert budget.held == 200 and await raw.zrange(holds, 0, -1) == ["h2"]
    clock.advance(10)
    assert await store.sweep_holds(1) == 1
    assert await store.sweep_holds(10) == 1
    assert await store.sweep_holds(10) == 0
    assert not await raw.exists(holds)
    for user in ("alice", "bob"):
        got = await store.get_budget(user, "s1", default_limit=LIMIT, currency="USD")
        assert got.held == 0
    assert (await store.capture("alice", "s1", "h2", 1, "c1", "")).status == "unknown"


async def test_a_refund_releases_expired_holds_as_sqlite_does(
    store: RedisStore, clock: FakeClock, tmp_path: Path
) -> None:
    reference = create_store(f"sqlite:///{tmp_path / 'ref.db'}", clock=clock)
    await reference.open()
    try:
        outcomes = []
        for backend in (reference, store):
            await session(backend)
            await backend.reserve(request("alice", "s1", 100, "h1", ttl=10))
            await backend.charge(request("alice", "s1", 250, "c1"))
        clock.advance(10)
        for backend in (reference, store):
            outcomes.append(await backend.refund("alice", "s1", "c1", "r1"))
        assert outcomes[0] == outcomes[1]
        assert outcomes[1].budget == BudgetRow("alice", "s1", LIMIT, 0, 0, "USD")
    finally:
        await reference.aclose()


async def test_verify_finds_totals_that_disagree(
    store: RedisStore, url: str, raw: aioredis.Redis
) -> None:
    for user in ("alice", "{u:bob}"):
        await session(store, user)
        await store.charge(request(user, "s1", 250, "c1"))
        await store.reserve(request(user, "s1", 100, "h1"))
    assert await store.verify_ledger() == []
    alice, bob = budget_keys(url, "alice", "s1")["b"], budget_keys(url, "{u:bob}", "s1")["b"]
    await raw.hset(alice, "sp", "251")
    await raw.hset(bob, "hd", "99")
    assert sorted(await store.verify_ledger(), key=repr) == [
        LedgerProblem("alice", "s1", "spent", 251, 250),
        LedgerProblem("{u:bob}", "s1", "held", 99, 100),
    ]


async def test_scripts_still_run_after_script_flush(store: RedisStore, raw: aioredis.Redis) -> None:
    await session(store)
    await raw.script_flush()
    assert (await store.charge(request("alice", "s1", 1, "c1"))).status == "charged"
    assert await store.verify_ledger() == []


def test_owner_of_reads_back_every_session_key() -> None:
    layout = KeyLayout("app:b:1")
    for user in [*ODD_USERS, "a:b", ""]:
        for sid in ["s:{1}", "}", "plain"]:
            for key in layout.budget(user, sid)[:5]:
                assert layout.owner_of(key) == (user, sid)
    assert layout.owner_of(layout.user_budget("alice")[0]) is None
    assert layout.owner_of("other:{u:alice}:b:s1") is None


async def test_a_budget_set_before_its_session_lives_as_long_as_it(
    store: RedisStore, url: str, raw: aioredis.Redis
) -> None:
    await store.set_budget("alice", "s1", limit=500, currency="USD")
    row = replace(new_row("alice", "s1", idle=3 * 86400.0), absolute_timeout=5 * 86400.0)
    await store.create_session(row, max_sessions=9, evict_oldest=False)
    ttl = await ttls(raw, budget_keys(url, "alice", "s1"))
    assert ttl["s"] > DAY_MS and abs(ttl["b"] - ttl["s"]) < 50
    charged = await store.charge(request("alice", "s1", 400, "c1"))
    assert charged.budget == BudgetRow("alice", "s1", 500, 400, 0, "USD")


async def test_the_ledger_on_the_server_clock(url: str) -> None:
    store = create_store(url)  # no injected clock: the scripts read TIME
    await store.open()
    try:
        await session(store)
        charged = await store.charge(request("alice", "s1", 250, "c1", "k"))
        assert charged.status == "charged" and charged.entry is not None
        hold = await store.reserve(request("alice", "s1", 100, "h1", ttl=3600))
        assert hold.budget == BudgetRow("alice", "s1", LIMIT, 250, 100, "USD")
        assert await store.sweep_holds(10) == 0  # not expired on the server's clock
        [entry] = await store.list_charges("alice", "s1", after=None, limit=10)
        assert entry == charged.entry and abs(entry.created_at - time.time()) < 60
        assert await store.verify_ledger() == []
    finally:
        await store.aclose()
