"""What only the Redis store has: key layout, TTLs, the route cache, scripts, the pool.

Everything runs against the real server from ``tests/conftest.py``; time is a FakeClock.
"""

from __future__ import annotations

import gc
import inspect
import json
import math
import random
import re
import socket
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from functools import partial
from importlib import resources
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.connection import (
    BlockingConnectionPool,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.crc import key_slot

from sessionward import (
    ConfigurationError,
    FakeClock,
    SessionIdleExpired,
    SessionwardError,
    Settings,
    StorageUnavailable,
    UnknownSession,
    open_ward,
    parse_store_url,
)
from sessionward.stores import create_store
from sessionward.stores.protocols import Store
from sessionward.stores.records import (
    BudgetOutcome,
    ById,
    ByToken,
    ChargeRequest,
    GcraCheck,
    GcraResult,
    NewSessionRow,
    NewUserRow,
    Refreshed,
    StateScope,
    StateWrite,
    UserChange,
)
from sessionward.stores.redis import RedisStore, connection
from sessionward.stores.redis.connection import PRELUDES, connection_kwargs
from sessionward.stores.redis.keys import FIELDS, KeyLayout, decode_id, encode_id
from sessionward.testing.races import race
from sessionward.tokens import hash_token
from sessionward.urls import RedisOptions
from sessionward.ward import Ward

pytestmark = pytest.mark.anyio
BACKEND = "redis"  # tests/stores/conftest.py: url, clock, store, raw

IDLE = 1800.0
ABSOLUTE = 43200.0
ODD_USERS = ["{u:bob}", "bob}:s:", "a:b", "a{", "}", "~YQ", "YQ", "a", "ünï cödé", "x" * 255]


@pytest.fixture
def settings() -> Settings:
    return Settings(session_idle_timeout=IDLE, session_absolute_timeout=ABSOLUTE)


@pytest.fixture
async def ward(url: str, clock: FakeClock, settings: Settings) -> AsyncIterator[Ward]:
    async with open_ward(url, settings=settings, clock=clock, sweep=False) as ward:
        yield ward


def prefix(url: str) -> str:
    options = parse_store_url(url).options
    assert isinstance(options, RedisOptions)
    return options.key_prefix


async def keys_of(raw: aioredis.Redis, url: str) -> set[str]:
    return {key async for key in raw.scan_iter(match=f"{prefix(url)}:*", count=1000)}


def hash_tag(key: str) -> str:
    start = key.index("{") + 1
    return key[start : key.index("}", start)]


def new_row(user: str, session: str, token: str = "t", idle: float = IDLE) -> NewSessionRow:
    return NewSessionRow(
        session_id=session,
        user_id=user,
        token_hash=hash_token(f"{user}/{session}/{token}"),
        idle_timeout=idle,
        absolute_timeout=ABSOLUTE,
        ip=None,
        user_agent=None,
        metadata="{}",
    )


# key layout


async def test_key_layout_and_hash_tags(ward: Ward, url: str, raw: aioredis.Redis) -> None:
    new = await ward.sessions.create("alice")
    await ward.state.put(new.session.scope(), "prefs", 1)
    await ward.state.put(new.session.scope("session"), "cart", 1)
    p, sid = prefix(url), new.session.session_id
    user_keys = {f"{p}:{{u:alice}}:{s}" for s in (f"s:{sid}", "idx", "us", f"ss:{sid}")}
    route, owner = f"{p}:t:{hash_token(new.token)}", f"{p}:i:{sid}"
    assert await keys_of(raw, url) == {*user_keys, route, owner, f"{p}:{{act}}:s"}
    assert len({key_slot(key.encode()) for key in user_keys}) == 1
    assert await raw.get(route) == f'["alice", "{sid}"]'
    assert await raw.get(owner) == "alice"  # a lookup by the session id alone


async def test_a_refused_create_leaves_no_owner_key(
    store: RedisStore, url: str, raw: aioredis.Redis
) -> None:
    assert (await store.create_session(new_row("alice", "s1"), max_sessions=1,
                                       evict_oldest=False)).row is not None  # fmt: skip
    refused = await store.create_session(new_row("alice", "s2"), max_sessions=1,
                                         evict_oldest=False)  # fmt: skip
    assert refused.row is None
    assert await store.find_session_owner("s1") == "alice"
    assert await store.find_session_owner("s2") is None
    assert f"{prefix(url)}:i:s2" not in await keys_of(raw, url)


@pytest.mark.parametrize("value", [*ODD_USERS, "", "plain_id.1@x-y", "~", "a/b+c="])
def test_id_encoding_is_reversible_and_stays_inside_the_tag(value: str) -> None:
    encoded = encode_id(value)
    assert decode_id(encoded) == value
    assert not set(encoded) & set("{}:")
    key = KeyLayout("p").session(value, value)[0]
    assert hash_tag(key) == f"u:{encoded}"


def test_id_encodings_never_collide() -> None:
    values = [*ODD_USERS, "", "~", "~~", "YQ==", "~YQ==", "a.b", "a_b"]
    assert len({encode_id(v) for v in values}) == len(values)


async def test_odd_user_ids_stay_isolated(ward: Ward, url: str, raw: aioredis.Redis) -> None:
    made = {}
    for user in ODD_USERS:
        made[user] = await ward.sessions.create(user)
        await ward.state.put(made[user].session.scope(), "doc", user)
        await ward.state.put(made[user].session.scope("session"), "doc", [user])
    keys = await keys_of(raw, url)
    for user, new in made.items():
        own = {k for k in keys if "{" in k and hash_tag(k) == f"u:{encode_id(user)}"}
        assert len(own) == 4, user  # session, index, user state, session state
        assert len({key_slot(k.encode()) for k in own}) == 1
        [listed] = await ward.sessions.list_active(user)
        assert listed.session_id == new.session.session_id
        doc = await ward.state.get(listed.scope(), "doc")
        assert doc is not None and doc.data == user
        assert await ward.state.names(listed.scope("session")) == ["doc"]
        assert (await ward.sessions.validate(new.token)).user_id == user
    # and one route and one owner key each, and the activity zset
    assert len(keys) == 6 * len(ODD_USERS) + 1


async def test_odd_session_ids(url: str, clock: FakeClock) -> None:
    store = create_store(url, clock=clock)
    await store.open()
    try:
        for sid in ["s:{x}", "}", "a b"]:
            created = await store.create_session(
                new_row("u", sid), max_sessions=9, evict_oldest=False
            )
            assert created.row is not None and created.row.session_id == sid
            found = await store.find_session(ById("u", sid), touch_interval=None)
            assert found.row == created.row
        rows, _ = await store.list_sessions("u")
        assert [row.session_id for row in rows] == ["s:{x}", "}", "a b"]
    finally:
        await store.aclose()


def test_lua_fields_match_the_python_fields() -> None:
    prelude = (resources.files("sessionward.stores.redis") / "lua" / "prelude.lua").read_text()
    line = re.search(r"^local FIELDS = \{(.*)\}$", prelude, re.MULTILINE)
    assert line is not None
    assert tuple(re.findall(r"'(\w+)'", line.group(1))) == FIELDS


def test_every_script_is_packaged() -> None:
    lua = resources.files("sessionward.stores.redis") / "lua"
    names = {entry.name for entry in lua.iterdir()}
    store = RedisStore(parse_store_url("redis://127.0.0.1:1/0"))
    assert {f"{name}.lua" for name in store._scripts} | set(PRELUDES) == names


# TTLs


async def test_session_keys_expire_and_user_state_does_not(
    ward: Ward, url: str, raw: aioredis.Redis
) -> None:
    new = await ward.sessions.create("alice")
    await ward.state.put(new.session.scope(), "prefs", 1)
    await ward.state.put(new.session.scope("session"), "cart", 1)
    p, sid = prefix(url), new.session.session_id
    for key in (f"{p}:{{u:alice}}:s:{sid}", f"{p}:{{u:alice}}:ss:{sid}", f"{p}:{{u:alice}}:idx"):
        assert (IDLE - 60) * 1000 < await raw.pttl(key) <= IDLE * 1000, key
    route_ttl = await raw.pttl(f"{p}:t:{hash_token(new.token)}")
    assert ABSOLUTE * 1000 <= route_ttl <= (ABSOLUTE + 60) * 1000
    assert await raw.pttl(f"{p}:{{u:alice}}:us") == -1


@pytest.mark.parametrize("start", [1_000.0, 4_102_444_800.0], ids=["1970", "2100"])
async def test_ttls_follow_the_injected_clock_not_its_epoch(
    url: str, settings: Settings, raw: aioredis.Redis, start: float
) -> None:
    clock = FakeClock(start)  # far from the server's time: absolute expiries would be wrong
    async with open_ward(url, settings=settings, clock=clock, sweep=False) as ward:
        new = await ward.sessions.create("alice")
        key = f"{prefix(url)}:{{u:alice}}:s:{new.session.session_id}"
        assert (IDLE - 60) * 1000 < await raw.pttl(key) <= IDLE * 1000
        clock.advance(IDLE)
        assert await raw.exists(key)  # Redis keeps it: real time has not passed ...
        with pytest.raises(SessionIdleExpired):  # ... but the fake clock says it expired
            await ward.sessions.validate(new.token)


async def test_a_touch_re_arms_the_ttls(
    ward: Ward, url: str, raw: aioredis.Redis, clock: FakeClock
) -> None:
    new = await ward.sessions.create("alice")
    await ward.state.put(new.session.scope("session"), "cart", 1)
    p, sid = prefix(url), new.session.session_id
    keys = [f"{p}:{{u:alice}}:s:{sid}", f"{p}:{{u:alice}}:ss:{sid}"]
    for key in keys:
        await raw.pexpire(key, 5_000)  # as if most of the idle time had passed for real
    clock.advance(ward.settings.session_touch_interval)
    await ward.sessions.validate(new.token)
    for key in keys:
        assert await raw.pttl(key) > (IDLE - 60) * 1000, key


# the route cache


class RoundTrips:
    """Counts writes to the server's sockets (one per command, or per pipeline), through
    redis-py or through the store's own way for rate-limit decisions (``write_packed``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[list[str]] = []
        self.packets: list[bytes] = []
        original = Connection.send_packed_command
        lean = connection.write_packed

        def count(command: Any) -> None:
            packed = command if isinstance(command, bytes) else b"".join(command)
            names = re.findall(rb"\*\d+\r\n\$\d+\r\n([A-Za-z]+)\r\n", packed)
            self.sent.append([name.decode().upper() for name in names])
            self.packets.append(packed)

        async def counting(conn: Any, command: Any, check_health: bool = True) -> None:
            count(command)
            await original(conn, command, check_health)

        def counting_lean(writer: Any, packed: bytes) -> bool:
            count(packed)
            return lean(writer, packed)

        monkeypatch.setattr(Connection, "send_packed_command", counting)
        monkeypatch.setattr(connection, "write_packed", counting_lean)

    def reset(self) -> None:
        self.sent.clear()
        self.packets.clear()


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> RoundTrips:
    return RoundTrips(monkeypatch)


async def test_a_cached_route_validates_in_one_round_trip(
    ward: Ward, url: str, clock: FakeClock, settings: Settings, round_trips: RoundTrips
) -> None:
    new = await ward.sessions.create("alice")
    round_trips.reset()
    await ward.sessions.validate(new.token)
    assert round_trips.sent == [["GET"]]  # a plain GET of the session: no script
    # another process has no cached route: one GET of the route first
    async with open_ward(url, settings=settings, clock=clock, sweep=False) as other:
        await other.ping()
        round_trips.reset()
        await other.sessions.validate(new.token)
        assert round_trips.sent == [["GET"], ["GET"]]
        round_trips.reset()
        await other.sessions.validate(new.token)
        assert round_trips.sent == [["GET"]]


async def test_a_due_touch_runs_the_script_on_the_server_clock(
    url: str, round_trips: RoundTrips
) -> None:
    async with open_ward(url, settings=Settings(session_touch_interval=0), sweep=False) as ward:
        new = await ward.sessions.create("alice")
        round_trips.reset()
        session = await ward.sessions.validate(new.token)
        # the touch, then the activity count's record of it
        assert round_trips.sent == [["GET"], ["EVALSHA"], ["ZADD", "PEXPIRE"]]
        assert session.last_seen_at > new.session.last_seen_at
        assert session.idle_expires_at > new.session.idle_expires_at


async def test_an_unknown_token_is_one_round_trip_with_the_server_clock(
    url: str, round_trips: RoundTrips
) -> None:
    async with open_ward(url, sweep=False) as ward:
        await ward.ping()
        round_trips.reset()
        with pytest.raises(UnknownSession):
            await ward.sessions.validate("not-a-token")
        assert round_trips.sent == [["GET", "TIME"]]


async def test_a_spent_token_keeps_its_route_and_is_refused(
    ward: Ward, url: str, clock: FakeClock, settings: Settings, raw: aioredis.Redis
) -> None:
    new = await ward.sessions.create("alice")
    async with open_ward(url, settings=settings, clock=clock, sweep=False) as other:
        await other.sessions.validate(new.token)  # caches the route
        rotated = await ward.sessions.rotate(new.token)
        with pytest.raises(UnknownSession):
            await other.sessions.validate(new.token)  # the cached route leads to a spent hash
        assert (await other.sessions.validate(rotated.token)).generation == 2
    p = prefix(url)
    # the spent hash's route stays, so that a refresh presenting it finds the session
    for token in (new.token, rotated.token):
        route = f"{p}:t:{hash_token(token)}"
        assert await raw.get(route) == f'["alice", "{new.session.session_id}"]'
        assert 0 < await raw.pttl(route) <= (ABSOLUTE + 60) * 1000


async def test_the_route_cache_is_bounded(url: str, clock: FakeClock) -> None:
    store = create_store(f"{url}&route_cache_size=2", clock=clock)
    await store.open()
    try:
        hashes = []
        for n in range(4):
            row = new_row("u", f"s{n}")
            await store.create_session(row, max_sessions=9, evict_oldest=False)
            hashes.append(row.token_hash)
        assert isinstance(store, RedisStore) and len(store._routes) == 2
        for token_hash in hashes:  # evicted routes are read again from Redis
            assert (await store.find_session(ByToken(token_hash), touch_interval=None)).row
    finally:
        await store.aclose()


# scripts


async def test_scripts_still_run_after_script_flush(ward: Ward, raw: aioredis.Redis) -> None:
    new = await ward.sessions.create("alice")
    await raw.script_flush()
    assert (await ward.sessions.validate(new.token)).user_id == "alice"
    assert await ward.state.put(new.session.scope(), "doc", 1) == 1


async def test_sessions_created_in_one_tick_keep_their_order(url: str, clock: FakeClock) -> None:
    store = create_store(url, clock=clock)  # the clock never moves here
    await store.open()
    try:
        for sid in ["c", "b", "a"]:  # creation order is not the ids' order
            await store.create_session(new_row("u", sid), max_sessions=3, evict_oldest=True)
        rows, _ = await store.list_sessions("u")
        assert [row.session_id for row in rows] == ["c", "b", "a"]
        created = await store.create_session(new_row("u", "d"), max_sessions=3, evict_oldest=True)
        assert created.evicted == ("c",)
    finally:
        await store.aclose()


async def test_sweep_deletes_what_the_injected_clock_calls_dead(
    ward: Ward, url: str, raw: aioredis.Redis, clock: FakeClock
) -> None:
    dead = await ward.sessions.create("alice")
    await ward.state.put(dead.session.scope("session"), "cart", 1)
    clock.advance(IDLE)
    live = await ward.sessions.create("alice")
    assert await ward.store.sweep_sessions(10) == 1
    keys = await keys_of(raw, url)
    assert not [k for k in keys if dead.session.session_id in k]
    assert f"{prefix(url)}:t:{hash_token(dead.token)}" not in keys
    assert await ward.sessions.validate(live.token)


async def test_sweep_is_a_no_op_on_the_server_clock(url: str) -> None:
    async with open_ward(url, sweep=False) as ward:
        await ward.sessions.create("alice")
        assert await ward.store.sweep_sessions(10) == 0


# refresh: spent token hashes


def user_keys(url: str, user: str) -> str:
    return f"{prefix(url)}:{{u:{encode_id(user)}}}:"


async def test_spent_hashes_live_in_the_session_slot_and_expire_with_it(
    store: RedisStore, url: str, raw: aioredis.Redis, clock: FakeClock
) -> None:
    first = new_row("alice", "s1")
    await store.create_session(first, max_sessions=9, evict_oldest=False)
    t1, t2 = hash_token("t1"), hash_token("t2")
    await store.refresh_session(first.token_hash, t1, grace=10)
    await store.refresh_session(t1, t2, grace=10)
    base = user_keys(url, "alice")
    session, spent = f"{base}s:s1", f"{base}sp:s1"
    assert await raw.type(spent) == "set"
    assert await raw.smembers(spent) == {first.token_hash, t1}  # every hash, not only the last
    assert key_slot(spent.encode()) == key_slot(session.encode())
    assert (IDLE - 60) * 1000 < await raw.pttl(spent) <= IDLE * 1000
    for token_hash in (first.token_hash, t1, t2):  # spent routes stay, with a TTL
        route = f"{prefix(url)}:t:{token_hash}"
        assert await raw.get(route) == '["alice", "s1"]'
        assert 0 < await raw.pttl(route) <= (ABSOLUTE + 60) * 1000
    for key in (session, spent):
        await raw.pexpire(key, 5_000)  # as if most of the idle time had passed for real
    clock.advance(60)
    await store.find_session(ById("alice", "s1"), touch_interval=60)
    assert await raw.pttl(spent) > (IDLE - 60) * 1000  # a touch re-arms it with the session


async def test_sweep_deletes_spent_sets_and_every_route(
    store: RedisStore, url: str, raw: aioredis.Redis, clock: FakeClock
) -> None:
    first = new_row("alice", "s1")
    await store.create_session(first, max_sessions=9, evict_oldest=False)
    await store.put_state(StateScope("session", "alice", "s1"), "cart", "1", expected_version=None)
    await store.refresh_session(first.token_hash, hash_token("t1"), grace=10)
    await store.rotate_session(ById("alice", "s1"), hash_token("t2"))
    # session, state, index, spent set, 3 routes, owner, the activity zset
    assert len(await keys_of(raw, url)) == 9
    clock.advance(IDLE)
    assert await store.sweep_sessions(10) == 1
    # the activity zset expires by its TTL; a count trims it and reads no dead session
    assert await keys_of(raw, url) == {f"{prefix(url)}:{{act}}:s"}
    assert (await store.count_active(IDLE)).sessions == 0
    refreshed = await store.refresh_session(first.token_hash, hash_token("t1"), grace=10)
    assert refreshed.outcome == "unknown"


async def test_refresh_from_another_instance_with_a_cold_route_cache(
    store: RedisStore, url: str, clock: FakeClock, round_trips: RoundTrips
) -> None:
    first = new_row("alice", "s1")
    await store.create_session(first, max_sessions=9, evict_oldest=False)
    t0, t1, t2 = first.token_hash, hash_token("t1"), hash_token("t2")
    rotated = await store.refresh_session(t0, t1, grace=10)
    other = create_store(url, clock=clock)
    await other.open()
    try:
        round_trips.reset()
        replay = await other.refresh_session(t0, t1, grace=10)
        assert replay == replace(rotated, outcome="replayed")
        # the spent hash's route, the decision, the new hash's route again (idempotent)
        # and the activity count's record of it
        assert round_trips.sent == [["GET"], ["EVALSHA"], ["SET"], ["ZADD", "PEXPIRE"]]
        round_trips.reset()
        again = await other.refresh_session(t1, t2, grace=10)
        assert again.outcome == "rotated" and again.row is not None
        # t1's route is cached now
        assert round_trips.sent == [["EVALSHA"], ["SET"], ["ZADD", "PEXPIRE"]]
        found = await store.find_session(ByToken(t2), touch_interval=None)
        assert found.row == again.row  # through the route the other instance wrote
        reused = await store.refresh_session(t0, hash_token("t9"), grace=10)
        assert reused.outcome == "reused"
        seen = await other.find_session(ById("alice", "s1"), touch_interval=None)
        assert seen.row is not None and seen.row.revoked_at == clock.now()
    finally:
        await other.aclose()


async def test_a_refused_create_keeps_the_route_of_a_spent_hash(
    store: RedisStore, url: str, raw: aioredis.Redis
) -> None:
    first = new_row("alice", "s1")
    await store.create_session(first, max_sessions=9, evict_oldest=False)
    await store.refresh_session(first.token_hash, hash_token("t1"), grace=10)
    with pytest.raises(ConfigurationError):  # the same session again, with its spent hash
        await store.create_session(first, max_sessions=9, evict_oldest=False)
    assert await raw.exists(f"{prefix(url)}:t:{first.token_hash}")  # not this create's to drop
    reused = await store.refresh_session(first.token_hash, hash_token("t9"), grace=10)
    assert reused.outcome == "reused"
    refused = new_row("alice", "s2")
    assert (await store.create_session(refused, max_sessions=0, evict_oldest=False)).row is None
    assert not await raw.exists(f"{prefix(url)}:t:{refused.token_hash}")  # its own: dropped


async def test_a_hash_routed_to_a_session_that_never_carried_it_is_unknown(
    store: RedisStore, url: str, raw: aioredis.Redis
) -> None:
    first = new_row("alice", "s1")
    await store.create_session(first, max_sessions=9, evict_oldest=False)
    # e.g. the route of a create that lost a session id collision, left by a crash
    await raw.set(f"{prefix(url)}:t:{hash_token('stray')}", '["alice", "s1"]')
    stray = await store.refresh_session(hash_token("stray"), hash_token("t1"), grace=10)
    assert stray.outcome == "unknown"  # only the spent set proves a hash was carried
    found = await store.find_session(ById("alice", "s1"), touch_interval=None)
    assert found.row is not None and found.row.is_live(found.now)


async def test_refresh_on_the_server_clock(url: str) -> None:
    store = create_store(url)
    await store.open()
    try:
        first = new_row("alice", "s1")
        created = await store.create_session(first, max_sessions=9, evict_oldest=False)
        assert created.row is not None
        rotated = await store.refresh_session(first.token_hash, hash_token("t1"), grace=10)
        assert rotated.outcome == "rotated" and rotated.row is not None
        rotated_at = rotated.row.rotated_at
        assert rotated_at is not None and created.row.created_at <= rotated_at
        assert rotated_at == rotated.row.last_seen_at
        replay = await store.refresh_session(first.token_hash, hash_token("t1"), grace=10)
        assert replay.outcome == "replayed"
    finally:
        await store.aclose()


# users


def user_row(user_id: str, name: str, roles: tuple[str, ...] = ("user",)) -> NewUserRow:
    return NewUserRow(user_id, name, name.lower(), "h1", roles)


def username_keys(url: str) -> tuple[str, str]:
    return f"{prefix(url)}:{{usernames}}", f"{prefix(url)}:{{usernames}}:sorted"


async def test_user_keys_and_no_ttls(store: RedisStore, url: str, raw: aioredis.Redis) -> None:
    created = await store.create_user(user_row("id:1", "Ålice", ("user", "admin")))
    assert created is not None
    record = f"{user_keys(url, 'id:1')}user"
    index, ordered = username_keys(url)
    assert await keys_of(raw, url) == {record, index, ordered}  # no unclaimed mark left
    assert [await raw.type(k) for k in (record, index, ordered)] == ["string", "hash", "zset"]
    assert all([await raw.pttl(k) == -1 for k in (record, index, ordered)])
    assert key_slot(index.encode()) == key_slot(ordered.encode())
    assert await raw.hgetall(index) == {"ålice": "id:1"}
    assert await raw.zrange(ordered, 0, -1, withscores=True) == [("ålice", 0.0)]
    assert json.loads(await raw.get(record))["ro"] == '["user", "admin"]'


async def test_empty_roles_survive_a_lua_update(store: RedisStore) -> None:
    await store.create_user(user_row("id-1", "alice", roles=()))
    changed = await store.update_user("id-1", UserChange(disabled=True))
    assert changed is not None and changed.roles == () and changed.disabled
    emptied = await store.update_user("id-2", UserChange(roles=()))
    assert emptied is None
    await store.create_user(user_row("id-2", "bob"))
    emptied = await store.update_user("id-2", UserChange(roles=()))
    assert emptied is not None and emptied.roles == ()
    assert await store.get_user("id-2") == emptied


async def test_a_user_whose_claim_never_landed_is_invisible(
    store: RedisStore, url: str, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def crash(username_key: str, user_id: str) -> bool:
        raise StorageUnavailable("the redis store is unavailable: the process died here")

    with monkeypatch.context() as patched:
        patched.setattr(store, "_claim", crash)
        with pytest.raises(StorageUnavailable):
            await store.create_user(user_row("id-1", "alice"))
    base = user_keys(url, "id-1")
    assert await keys_of(raw, url) == {f"{base}user", f"{base}user:unclaimed"}
    assert await store.get_user("id-1") is None  # the record exists, unclaimed
    assert await store.find_user("alice") is None
    assert await store.list_users(after=None, limit=10) == []
    assert await store.update_user("id-1", UserChange(disabled=True)) is None
    winner = await store.create_user(user_row("id-2", "Alice"))
    assert winner is not None
    assert await store.find_user("alice") == winner
    assert await store.list_users(after=None, limit=10) == [winner]
    assert await store.get_user("id-1") is None


async def test_an_index_entry_without_its_record_is_absent_and_taken_over(
    store: RedisStore, url: str, raw: aioredis.Redis
) -> None:
    await store.create_user(user_row("id-1", "alice"))
    bob = await store.create_user(user_row("id-bob", "bob"))
    await raw.delete(f"{user_keys(url, 'id-1')}user")  # as if the record had been lost
    assert await store.find_user("alice") is None
    assert await store.get_user("id-1") is None
    assert await store.list_users(after=None, limit=1) == [bob]  # the page reads past the hole
    contenders = [partial(store.create_user, user_row(f"id-{n}", "Alice")) for n in range(2, 12)]
    winners = [row for row in await race(contenders) if row is not None]
    assert len(winners) == 1
    assert await store.find_user("alice") == winners[0]
    assert await store.list_users(after=None, limit=10) == [winners[0], bob]
    records = {k for k in await keys_of(raw, url) if k.endswith(":user")}
    assert records == {f"{user_keys(url, u)}user" for u in (winners[0].user_id, "id-bob")}


async def test_a_claimed_user_whose_mark_was_left_is_healed_by_readers(
    store: RedisStore, url: str, raw: aioredis.Redis
) -> None:
    created = await store.create_user(user_row("id-1", "alice"))
    mark = f"{user_keys(url, 'id-1')}user:unclaimed"
    await raw.set(mark, "1")  # as if the process died just after the claim landed
    assert await store.find_user("alice") == created
    assert await store.get_user("id-1") == created
    assert not await raw.exists(mark)
    await raw.set(mark, "1")
    changed = await store.update_user("id-1", UserChange(disabled=True))
    assert changed is not None and changed.disabled
    assert not await raw.exists(mark)


async def test_user_round_trips(store: RedisStore, round_trips: RoundTrips) -> None:
    round_trips.reset()
    await store.create_user(user_row("id-1", "alice"))
    assert round_trips.sent == [["EVALSHA"], ["EVALSHA"], ["DEL"]]  # record, claim, mark
    await store.create_user(user_row("id-2", "bob"))
    expected = {
        partial(store.get_user, "id-1"): [["MGET"]],
        partial(store.find_user, "alice"): [["HGET"], ["GET"]],
        partial(store.list_users, after=None, limit=5): [["EVALSHA"], ["GET", "GET"]],
        partial(store.update_user, "id-1", UserChange(disabled=True)): [["EVALSHA"]],
    }
    for call, sent in expected.items():
        round_trips.reset()
        await call()
        assert round_trips.sent == sent, call


# limits


async def test_limiter_keys_hold_the_exact_tat_and_expire_at_it(
    store: RedisStore, url: str, raw: aioredis.Redis, clock: FakeClock
) -> None:
    keys = ["login:acct:" + "ab" * 32, "ip:203.0.113.9", "plain", "{u:alice}"]
    checks = [GcraCheck(key, period=0.1, capacity=10.0, cost=3) for key in keys]
    decided = await store.gcra(checks)
    assert decided.tats == (clock.now() + 0.1 * 3,) * 4  # 0.30000000000000004: full precision
    stored = [f"{prefix(url)}:rl:{encode_id(key)}" for key in keys]
    assert stored[2] == f"{prefix(url)}:rl:plain" and "{" not in stored[3]
    for key, tat in zip(stored, decided.tats, strict=True):
        assert float(await raw.get(key)) == tat
        assert 0 < await raw.pttl(key) <= math.ceil((tat - clock.now()) * 1000)
    refund = await store.gcra([GcraCheck(keys[0], period=0.1, capacity=10.0, cost=-100)])
    assert refund.tats == (clock.now(),)
    assert not await raw.exists(stored[0])  # a TAT not ahead of now is no key at all
    await store.gcra([GcraCheck("peeked", 1.0, 10.0, 1)], apply=False)
    await store.gcra([GcraCheck("zero", 1.0, 10.0, 0)])
    assert await keys_of(raw, url) == set(stored[1:])
    await store.reset_limits(keys)
    assert await keys_of(raw, url) == set()


async def test_a_gcra_decision_is_one_round_trip(
    store: RedisStore, round_trips: RoundTrips
) -> None:
    checks = [GcraCheck(f"k{n}", period=1.0, capacity=5.0, cost=1) for n in range(3)]
    for apply in (True, False):
        round_trips.reset()
        await store.gcra(checks, apply=apply)
        assert round_trips.sent == [["EVALSHA"]]
    await store.ping()  # the decisions keep a connection: another one is opened (a handshake)
    round_trips.reset()
    await store.reset_limits(["k0", "k1"])
    assert round_trips.sent == [["DEL", "DEL"]]
    round_trips.reset()
    assert await store.sweep_limits(100) == 0
    assert round_trips.sent == []


async def test_no_immortal_keys_but_users_and_user_state(
    store: RedisStore, url: str, raw: aioredis.Redis
) -> None:
    first = new_row("alice", "s1")
    await store.create_session(first, max_sessions=9, evict_oldest=False)
    await store.refresh_session(first.token_hash, hash_token("t1"), grace=10)
    await store.refresh_session(first.token_hash, hash_token("t9"), grace=0)  # reused: revoked
    await store.create_session(new_row("alice", "s2"), max_sessions=9, evict_oldest=False)
    await store.rotate_session(ById("alice", "s2"), hash_token("t2"))
    await store.put_state(StateScope("session", "alice", "s2"), "cart", "1", expected_version=None)
    await store.put_state(StateScope("user", "alice"), "prefs", "1", expected_version=None)
    await store.create_user(user_row("alice", "Alice"))
    await store.gcra([GcraCheck("login:acct:x", 60.0, 600.0, 1), GcraCheck("ip:1", 1.0, 9.0, 2)])
    await store.gcra([GcraCheck("lock", 1.0, 30.0, 30)])
    await store.charge(ChargeRequest("alice", "s2", 5, "c1", "k", "", 100, "USD"))
    await store.reserve(ChargeRequest("alice", "s2", 5, "h1", None, "", 100, "USD", 60.0))
    await store.set_user_budget("alice", 1000)
    immortal = {key for key in await keys_of(raw, url) if await raw.pttl(key) == -1}
    base = user_keys(url, "alice")
    # and the user's spending cap: were it to expire, the cap would be lifted unnoticed
    assert immortal == {f"{base}us", f"{base}user", f"{base}bcap", *username_keys(url)}


# the same limits as the reference store, on a 30 s grid so that a TAT ahead of now is
# always at least 30 s ahead: Redis's real-time TTLs never fire while the fake clock stands


class LimitScript:
    KEYS = ("login:acct:x", "ip:203.0.113.9", "k", "{u:k}")

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def check(self) -> GcraCheck:
        rng = self.rng
        return GcraCheck(
            rng.choice(self.KEYS), period=rng.choice([30.0, 60.0, 90.0]),
            capacity=rng.choice([0.0, 30.0, 90.0, 300.0]), cost=rng.choice([-3, -1, 0, 1, 1, 2]),
        )  # fmt: skip

    def step(self, clock: FakeClock) -> Op | None:
        rng, kind = self.rng, self.rng.choice(["advance", "gcra", "gcra", "gcra", "reset"])
        if kind == "advance":
            clock.advance(rng.choice([30, 60, 300]))
            return None
        if kind == "reset":
            keys = rng.sample(self.KEYS, rng.randint(0, 2))
            return lambda s: s.reset_limits(keys)
        checks, apply = [self.check() for _ in range(rng.randint(0, 3))], rng.random() < 0.8
        return lambda s: s.gcra(checks, apply=apply)


@pytest.mark.parametrize("seed", range(4))
async def test_same_limits_as_the_memory_store(url: str, seed: int) -> None:
    clock = FakeClock()
    reference, store = create_store("memory://", clock=clock), create_store(url, clock=clock)
    await store.open()
    script, allowed = LimitScript(seed), 0
    try:
        for step in range(300):
            op = script.step(clock)
            if op is not None:
                expected = await op(reference)
                assert await op(store) == expected, step
                allowed += isinstance(expected, GcraResult) and all(expected.allowed)
    finally:
        await store.aclose()
    assert allowed > 20  # the script decides both ways


# the pool, failures, closing


async def test_pool_stats(url: str) -> None:
    async with open_ward(f"{url}&max_connections=3", sweep=False) as ward:
        await ward.ping()
        stats = ward.pool_stats()
        assert (stats.in_use, stats.waiting, stats.max_size) == (0, 0, 3)
        assert 1 <= stats.idle <= 3


async def take_connection(pool: Any) -> Any:
    # redis-py before 5.3 wants a command name here; later versions warn when given one
    params = inspect.signature(BlockingConnectionPool.get_connection).parameters
    needs_name = params["command_name"].default is inspect.Parameter.empty
    return await pool.get_connection(*(["PING"] if needs_name else []))


async def test_a_full_pool_counts_waiters_then_gives_up(url: str) -> None:
    store = create_store(f"{url}&max_connections=1&pool_timeout=0.2")
    assert isinstance(store, RedisStore)
    await store.open()
    try:
        held = await take_connection(store._pool)  # the only connection, taken
        async with anyio.create_task_group() as tasks:
            for _ in range(3):
                tasks.start_soon(store.ping)
            for _ in range(100):
                if store.pool_stats().waiting == 3:
                    break
                await anyio.lowlevel.checkpoint()
            stats = store.pool_stats()
            assert (stats.in_use, stats.idle, stats.waiting) == (1, 0, 3)
            await store._pool.release(held)  # now the three pings go through
        assert store.pool_stats().waiting == 0
        held = await take_connection(store._pool)
        started = time.perf_counter()
        with pytest.raises(StorageUnavailable) as exhausted:
            await store.ping()
        assert isinstance(exhausted.value.__cause__, redis.exceptions.ConnectionError)
        assert time.perf_counter() - started < 5
        await store._pool.release(held)
    finally:
        await store.aclose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_server_is_storage_unavailable_and_fast() -> None:
    url = f"redis://:pw-hunter2@127.0.0.1:{free_port()}/0?connect_timeout=0.5"
    store = create_store(url, clock=FakeClock())
    started = time.perf_counter()
    with pytest.raises(StorageUnavailable) as opening:
        await store.open()
    with pytest.raises(StorageUnavailable):
        await store.find_session(ByToken("0" * 64), touch_interval=None)
    assert time.perf_counter() - started < 6
    assert isinstance(opening.value.__cause__, redis.exceptions.ConnectionError)
    assert "hunter2" not in str(opening.value)
    await store.aclose()


class Listener:
    """A TCP port that accepts connections and never answers: counts connection attempts."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self._socket.setblocking(False)
        self.port = int(self._socket.getsockname()[1])
        self._accepted: list[socket.socket] = []

    def connections(self) -> int:
        while True:
            try:
                self._accepted.append(self._socket.accept()[0])
            except BlockingIOError:
                return len(self._accepted)

    def close(self) -> None:
        for conn in self._accepted:
            conn.close()
        self._socket.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()


async def test_a_write_that_may_have_applied_is_sent_once(listener: Listener) -> None:
    url = f"redis://127.0.0.1:{listener.port}/0?socket_timeout=0.2"
    store = create_store(url, clock=FakeClock())
    scope = StateScope("user", "alice")
    try:
        with pytest.raises(StorageUnavailable) as failed:
            await store.put_state(scope, "doc", "1", expected_version=None)
        assert isinstance(failed.value.__cause__, redis.exceptions.TimeoutError)
        assert listener.connections() == 1  # neither redis-py nor we sent it again
        with pytest.raises(StorageUnavailable):
            await store.get_state(scope, "doc")
        # a timeout already took the whole socket_timeout: even a read is not repeated
        assert listener.connections() == 1 + 1
    finally:
        await store.aclose()


@pytest.mark.parametrize("call", ["refresh", "gcra", "create_user", "update_user"])
async def test_a_decision_that_may_have_applied_is_sent_once(listener: Listener, call: str) -> None:
    url = f"redis://127.0.0.1:{listener.port}/0?socket_timeout=0.2"
    store = create_store(url, clock=FakeClock())
    assert isinstance(store, RedisStore)
    store._routes.put("t0", ("alice", "s1"))  # so that the script is the first command
    calls = {
        "refresh": partial(store.refresh_session, "t0", "t1", grace=10),
        "gcra": partial(store.gcra, [GcraCheck("k", 1.0, 5.0, 1)]),
        "create_user": partial(store.create_user, NewUserRow("id", "a", "a", "h", ())),
        "update_user": partial(store.update_user, "id", UserChange("h2", expected_hash="h1")),
    }
    try:
        with pytest.raises(StorageUnavailable):
            await calls[call]()
        assert listener.connections() == 1  # a repetition could count, rotate or revoke twice
        with pytest.raises(StorageUnavailable):
            await store.gcra([GcraCheck("k", 1.0, 5.0, 1)], apply=False)
        assert listener.connections() == 1 + 1  # a timed-out peek is not repeated either
    finally:
        await store.aclose()


async def test_aclose_leaves_no_connection_and_no_warning(url: str, clock: FakeClock) -> None:
    store = create_store(url, clock=clock)
    assert isinstance(store, RedisStore)
    await store.open()
    async with anyio.create_task_group() as tasks:
        for n in range(5):  # several at once, so that the pool opens several connections
            row = new_row("u", f"s{n}")
            tasks.start_soon(partial(store.create_session, row, max_sessions=9, evict_oldest=False))
    connections = [*store._pool._available_connections]  # type: ignore[attr-defined]
    assert len(connections) > 1
    gc.collect()  # only what this test leaves behind may warn below
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await store.aclose()
        still_open = [c for c in connections if c.is_connected]
        del store, connections
        gc.collect()
    assert still_open == []
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [
        str(w) for w in caught
    ]


def test_the_password_never_shows(url: str) -> None:
    secret = "pw-s3cr3t-value"
    store = create_store(url.replace("redis://", f"redis://user:{secret}@"))
    assert isinstance(store, RedisStore)
    shown = [repr(store), str(store.url), repr(store._pool), repr(store._client)]
    shown.append(repr(store._pool.connection_kwargs))
    assert all(secret not in text for text in shown)
    assert "***" in repr(store)


@pytest.mark.parametrize(
    ("url", "connection_class", "expected"),
    [
        ("redis://h:7000/3", Connection, {"host": "h", "port": 7000, "db": 3}),
        ("rediss://h/0?ssl_cert_reqs=none", SSLConnection, {"host": "h", "ssl_cert_reqs": "none"}),
        ("redis+unix:///run/r.sock?db=2", UnixDomainSocketConnection, {"path": "/run/r.sock"}),
    ],
)
def test_connection_kwargs_per_scheme(
    url: str, connection_class: type, expected: dict[str, object]
) -> None:
    options = parse_store_url(url).options
    assert isinstance(options, RedisOptions)
    kwargs = connection_kwargs(options)
    assert kwargs["connection_class"] is connection_class
    assert expected.items() <= kwargs.items()


async def test_ping_and_server_version(ward: Ward) -> None:
    assert 0 < await ward.ping() < 1
    assert re.fullmatch(r"\d+\.\d+\.\d+", await ward.store.server_version())


async def test_delete_on_a_dead_session_scope_is_refused(ward: Ward, clock: FakeClock) -> None:
    new = await ward.sessions.create("alice")
    scope = new.session.scope("session")
    await ward.state.put(scope, "cart", 1)
    clock.advance(IDLE)
    written = await ward.store.delete_state(scope, "cart", expected_version=None)
    assert written == StateWrite(False, 1, owner_live=False)


# the same results as the reference store


class Script:
    """A random sequence of store calls over a few users, sessions, documents, accounts,
    limiter keys, budgets, ledgers and holds."""

    USERS = ("alice", "{u:bob}", "a:b")
    NAMES = ("alice", "Bob", "ça", "bob", "a:b")  # "Bob" and "bob" share a username_key
    LIMITS = ("login:acct:x", "ip:203.0.113.9", "k")
    BUDGET = 10_000

    def __init__(self, seed: int, clock: FakeClock) -> None:
        self.rng = random.Random(seed)
        self.clock = clock
        self.sessions: list[tuple[str, str, str]] = []  # user, session id, first token hash
        self.hashes: list[str] = []  # every token hash handed out, current or not
        self.refreshes: list[tuple[str, str]] = []  # (presented, new) of every refresh
        self.last_refresh: tuple[str, str] | None = None
        self.replay: tuple[str, str] | None = None  # a refresh that rotated, to present again
        self.scope_used: StateScope | None = None  # by the last state operation
        self.entries: list[Owned] = []  # every charge and refund id handed out, and whose
        self.holds: list[Owned] = []  # every hold id handed out, and whose
        self.n = 0

    def fresh_hash(self) -> str:
        self.n += 1
        self.hashes.append(hash_token(f"token-{self.n}"))
        return self.hashes[-1]

    def user(self) -> str:
        return self.rng.choice(self.USERS)

    def session(self) -> tuple[str, str]:
        user, sid, _ = self.rng.choice(self.sessions)
        return (self.user() if self.rng.random() < 0.2 else user), sid  # sometimes not theirs

    def key(self) -> ById | ByToken:
        if self.rng.random() < 0.5:
            return ByToken(self.rng.choice(self.hashes))
        return ById(*self.session())

    def scope(self) -> StateScope:
        if not self.sessions or self.rng.random() < 0.4:
            self.scope_used = StateScope("user", self.user())
        else:
            self.scope_used = StateScope("session", *self.session())
        return self.scope_used

    def create(self) -> Op:
        rng = self.rng
        if self.sessions and rng.random() < 0.1:  # the same session again: idempotent
            user, sid, first = rng.choice(self.sessions)
            row = replace(new_row(user, sid), token_hash=first)
        else:
            user, sid = self.user(), f"s{len(self.sessions)}"
            row = replace(new_row(user, sid), token_hash=self.fresh_hash(),
                          idle_timeout=rng.choice([100.0, IDLE]), absolute_timeout=1e7,
                          ip=rng.choice([None, "", "203.0.113.9"]))  # fmt: skip
            self.sessions.append((user, sid, row.token_hash))
        cap, evict = rng.choice([1, 2, 3]), rng.random() < 0.5
        return lambda s: s.create_session(row, max_sessions=cap, evict_oldest=evict)

    def step(self) -> tuple[str, Op | None]:
        rng = self.rng
        kind = rng.choice(["advance", "create", "create", "find", "find", "rotate", "revoke",
                           "revoke_all", "list", "put", "put", "get", "delete", "names",
                           "sweep", "refresh", "refresh", "refresh", "create_user",
                           "get_user", "find_user", "list_users", "update_user", "gcra",
                           "gcra", "reset_limits", "sweep_limits", "charge", "charge",
                           "charge", "reserve", "reserve", "refund", "capture", "release",
                           "get_budget", "set_budget", "get_user_budget", "set_user_budget",
                           "list_charges", "sweep_holds", "verify_ledger"])  # fmt: skip
        if kind == "advance":
            self.clock.advance(rng.choice([1, 30, 60, 61, 99, 900, IDLE]))
            return kind, None
        if kind == "create" or not self.sessions:
            return "create", self.create()
        return kind, getattr(self, f"_{kind}")()

    def _find(self) -> Op:
        key, touch = self.key(), self.rng.choice([None, 0.0, 60.0])
        return lambda s: s.find_session(key, touch_interval=touch)

    def _rotate(self) -> Op:
        key, new_hash = self.key(), self.fresh_hash()
        return lambda s: s.rotate_session(key, new_hash)

    def _revoke(self) -> Op:
        key = ById(*self.session())
        return lambda s: s.revoke_session(key)

    def _revoke_all(self) -> Op:
        user, keep = self.user(), self.rng.choice([None, self.session()[1]])
        return lambda s: s.revoke_user_sessions(user, keep=keep)

    def _list(self) -> Op:
        user = self.user()
        return lambda s: s.list_sessions(user)

    def _put(self) -> Op:
        scope, name, data = self.scope(), self.rng.choice("ab"), str(self.rng.random())
        expected = self.rng.choice([None, None, 0, 1, 2, 3])
        return lambda s: s.put_state(scope, name, data, expected_version=expected)

    def _get(self) -> Op:
        scope, name = self.scope(), self.rng.choice("ab")
        return lambda s: s.get_state(scope, name)

    def _delete(self) -> Op:
        scope, name, expected = self.scope(), self.rng.choice("ab"), self.rng.choice([None, 1, 2])
        return lambda s: s.delete_state(scope, name, expected_version=expected)

    def _names(self) -> Op:
        scope = self.scope()
        return lambda s: s.list_state(scope)

    def _sweep(self) -> Op:
        return lambda s: s.sweep_sessions(1000)

    def _refresh(self) -> Op:
        rng = self.rng
        if self.replay is not None and rng.random() < 0.7:
            (presented, new_hash), self.replay = self.replay, None
        elif self.refreshes and rng.random() < 0.3:  # again: a replay, a reuse, or late
            presented, new_hash = rng.choice(self.refreshes)
        else:
            recent = self.hashes[-3:]  # often current, so that refreshes rotate
            presented = rng.choice(recent if rng.random() < 0.5 else self.hashes)
            new_hash = self.fresh_hash()
            self.refreshes.append((presented, new_hash))
        grace = rng.choice([0.0, 60.0, 1000.0])
        self.last_refresh = (presented, new_hash)
        return lambda s: s.refresh_session(presented, new_hash, grace=grace)

    def saw(self, result: object) -> None:
        """What the last call returned: a refresh that rotated is presented again soon."""
        if isinstance(result, Refreshed) and result.outcome == "rotated":
            self.replay = self.last_refresh

    def user_id(self) -> str:
        return self.rng.choice(self.USERS)

    def _create_user(self) -> Op:
        name, roles = self.rng.choice(self.NAMES), self.rng.choice([(), ("user",), ("a", "b")])
        row = NewUserRow(self.user_id(), name, name.lower(), self.rng.choice(["h1", "h2"]), roles)
        return lambda s: s.create_user(row)

    def _get_user(self) -> Op:
        user_id = self.user_id()
        return lambda s: s.get_user(user_id)

    def _find_user(self) -> Op:
        username_key = self.rng.choice(self.NAMES).lower()
        return lambda s: s.find_user(username_key)

    def _list_users(self) -> Op:
        after = self.rng.choice([None, "", "a", "alice", "b", "bob", "zz"])
        limit = self.rng.choice([0, 1, 2, 10])
        return lambda s: s.list_users(after=after, limit=limit)

    def _update_user(self) -> Op:
        rng = self.rng
        change = UserChange(
            password_hash=rng.choice([None, "h1", "h2", ""]),
            expected_hash=rng.choice([None, None, "h1", "h2"]),
            disabled=rng.choice([None, True, False]),
            roles=rng.choice([None, (), ("admin",)]),
        )
        user_id = self.user_id()
        return lambda s: s.update_user(user_id, change)

    def _gcra(self) -> Op:
        # Periods of days: a TAT ahead of now stays far ahead (the fake clock moves hours
        # in a whole run), so Redis's real-time TTLs never fire while the fake clock stands.
        rng, day = self.rng, 86400.0
        checks = [
            GcraCheck(rng.choice(self.LIMITS), period=rng.choice([day, 2.5 * day]),
                      capacity=rng.choice([0.0, day, 4 * day]),
                      cost=rng.choice([-1, -0.5, 0, 1, 1, 2]))
            for _ in range(rng.randint(0, 3))
        ]  # fmt: skip
        apply = rng.random() < 0.8
        return lambda s: s.gcra(checks, apply=apply)

    def _reset_limits(self) -> Op:
        keys = self.rng.sample(self.LIMITS, self.rng.randint(0, 2))
        return lambda s: s.reset_limits(keys)

    def _sweep_limits(self) -> Op:
        return lambda s: s.sweep_limits(1000)

    # budgets, ledgers and holds: mostly on the newest sessions, which are still live

    def spender(self) -> tuple[str, str]:
        user, sid, _ = self.rng.choice(self.sessions[-4:])
        return (self.user() if self.rng.random() < 0.1 else user), sid

    def entry_id(self, owner: tuple[str, str], ids: list[Owned]) -> str:
        self.n += 1
        ids.append((*owner, f"e{self.n}"))
        return ids[-1][2]

    def recent(self, ids: list[Owned]) -> Owned:
        """A recent id, mostly with its owner."""
        if not ids or self.rng.random() < 0.2:
            return (*self.spender(), self.rng.choice(ids)[2] if ids else "none")
        return self.rng.choice(ids[-4:])

    def request(self, key: str | None, ids: list[Owned]) -> ChargeRequest:
        rng, owner = self.rng, self.spender()
        amount = rng.choice([1, 40, 300, 2500, 6000])
        if key is not None and rng.random() < 0.7:
            amount = 10 * len(key)  # mostly the same amount again: a replay
        return ChargeRequest(*owner, amount, self.entry_id(owner, ids), key, "d", self.BUDGET,
                             "USD", hold_ttl=rng.choice([30.0, 100.0, 1000.0]))  # fmt: skip

    def _charge(self) -> Op:
        request = self.request(self.rng.choice([None, "k", "kk", "kkk"]), self.entries)
        return lambda s: s.charge(request)

    def _reserve(self) -> Op:
        request = self.request(None, self.holds)
        return lambda s: s.reserve(request)

    def _refund(self) -> Op:
        user, sid, charge = self.recent(self.entries)
        refund_id = self.entry_id((user, sid), self.entries)

        async def op(s: Store) -> object:
            # the memory store's refund alone keeps a session's expired holds (SQLite's and ours
            # release them first, as every other operation does): releasing them first keeps
            # this comparison about the refund
            await s.get_budget(user, sid, default_limit=self.BUDGET, currency="USD")
            return await s.refund(user, sid, charge, refund_id)

        return op

    def _capture(self) -> Op:
        user, sid, hold = self.recent(self.holds)
        actual = self.rng.choice([0, 10, 300, 3000])
        entry_id = self.entry_id((user, sid), self.entries)
        return lambda s: s.capture(user, sid, hold, actual, entry_id, "captured")

    def _release(self) -> Op:
        user, sid, hold = self.recent(self.holds)
        return lambda s: s.release(user, sid, hold)

    def _get_budget(self) -> Op:
        user, sid = self.spender()
        return lambda s: s.get_budget(user, sid, default_limit=self.BUDGET, currency="USD")

    def _set_budget(self) -> Op:
        (user, sid), currency = self.spender(), self.rng.choice(["USD", "EUR"])
        limit = self.rng.choice([0, 500, 5000, 20_000])
        return lambda s: s.set_budget(user, sid, limit=limit, currency=currency)

    def _get_user_budget(self) -> Op:
        user = self.user()
        return lambda s: s.get_user_budget(user)

    def _set_user_budget(self) -> Op:
        user, limit = self.user(), self.rng.choice([None, 500, 5000, 30_000])
        return lambda s: s.set_user_budget(user, limit)

    def _list_charges(self) -> Op:
        user, sid, entry = self.recent(self.entries)
        after = self.rng.choice([None, entry])
        limit = self.rng.choice([1, 3, 100])
        return lambda s: s.list_charges(user, sid, after=after, limit=limit)

    def _sweep_holds(self) -> Op:
        return lambda s: s.sweep_holds(1000)

    def _verify_ledger(self) -> Op:
        return lambda s: s.verify_ledger()


Op = Callable[[Store], Awaitable[object]]
Owned = tuple[str, str, str]  # user, session, and an id in that session's ledger


async def outcome(op: Op, store: Store) -> object:
    try:
        return await op(store)
    except SessionwardError as exc:  # e.g. a session id collision: the same on both
        return type(exc)


def label(kind: str, result: object) -> str:
    if isinstance(result, Refreshed):
        return f"{kind}:{result.outcome}"
    if isinstance(result, GcraResult):
        return f"{kind}:{all(result.allowed)}"
    if isinstance(result, BudgetOutcome):
        return f"{kind}:{result.status}"
    return f"{kind}:{result is not None}" if kind.endswith("_user") else kind


@pytest.mark.parametrize("seed", range(4))
async def test_same_results_as_the_memory_store(url: str, seed: int) -> None:
    clock = FakeClock()
    reference, store = create_store("memory://", clock=clock), create_store(url, clock=clock)
    await reference.open()
    await store.open()
    script, seen = Script(seed, clock), Counter[str]()
    try:
        for step in range(1500):
            kind, op = script.step()
            if op is None:
                continue
            expected = await outcome(op, reference)
            if kind == "sweep_limits":  # Redis leaves passed TATs to their TTLs
                assert await op(store) == 0, step
            else:
                assert await outcome(op, store) == expected, (step, kind)
            seen[label(kind, expected)] += 1
            script.saw(expected)
    finally:
        await store.aclose()
    exercised = {"refresh:rotated", "refresh:replayed", "refresh:reused", "refresh:unknown"}
    exercised |= {"create_user:True", "create_user:False", "update_user:True", "gcra:False"}
    exercised |= {"charge:charged", "charge:closed", "reserve:held", "refund:refunded"}
    exercised |= {"capture:captured", "release:released"}
    assert exercised <= set(seen), sorted(seen)
    assert {"charge:replayed", "charge:mismatch"} & set(seen)
    assert {f"{kind}:{why}" for kind in ("charge", "reserve") for why in ("exceeded",
            "user_exceeded")} & set(seen)  # fmt: skip
