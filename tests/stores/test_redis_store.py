"""What only the Redis store has: key layout, TTLs, the route cache, scripts, the pool.

Everything runs against the real server from ``tests/conftest.py``; time is a FakeClock.
"""

from __future__ import annotations

import gc
import inspect
import random
import re
import socket
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from functools import partial
from importlib import resources
from pathlib import Path
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
from sessionward.stores.base import ById, ByToken, NewSessionRow, StateScope, StateWrite, Store
from sessionward.stores.redis import RedisStore, _connection_kwargs
from sessionward.stores.redis_keys import FIELDS, KeyLayout, decode_id, encode_id
from sessionward.tokens import hash_token
from sessionward.urls import RedisOptions
from sessionward.ward import Ward
from tests.conftest import REDIS_URL, url_for

pytestmark = pytest.mark.anyio

IDLE = 1800.0
ABSOLUTE = 43200.0
ODD_USERS = ["{u:bob}", "bob}:s:", "a:b", "a{", "}", "~YQ", "YQ", "a", "ünï cödé", "x" * 255]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return url_for("redis", tmp_path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings() -> Settings:
    return Settings(session_idle_timeout=IDLE, session_absolute_timeout=ABSOLUTE)


@pytest.fixture
async def ward(url: str, clock: FakeClock, settings: Settings) -> AsyncIterator[Ward]:
    async with open_ward(url, settings=settings, clock=clock, sweep=False) as ward:
        yield ward


@pytest.fixture
async def raw() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL.split("?")[0], decode_responses=True)
    yield client
    await client.aclose()


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
    route = f"{p}:t:{hash_token(new.token)}"
    assert await keys_of(raw, url) == {*user_keys, route}
    assert len({key_slot(key.encode()) for key in user_keys}) == 1
    assert await raw.get(route) == f'["alice", "{sid}"]'


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
    assert len(keys) == 5 * len(ODD_USERS)  # and one route each


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
    prelude = (resources.files("sessionward.stores") / "lua" / "prelude.lua").read_text()
    line = re.search(r"^local FIELDS = \{(.*)\}$", prelude, re.MULTILINE)
    assert line is not None
    assert tuple(re.findall(r"'(\w+)'", line.group(1))) == FIELDS


def test_every_script_is_packaged() -> None:
    lua = resources.files("sessionward.stores") / "lua"
    names = {entry.name for entry in lua.iterdir()}
    store = RedisStore(parse_store_url("redis://127.0.0.1:1/0"))
    assert {f"{name}.lua" for name in store._scripts} | {"prelude.lua"} == names


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
    """Counts writes to the server's sockets (one per command, or per pipeline)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[list[str]] = []
        original = Connection.send_packed_command

        async def counting(conn: Any, command: Any, check_health: bool = True) -> None:
            packed = command if isinstance(command, bytes) else b"".join(command)
            names = re.findall(rb"\*\d+\r\n\$\d+\r\n([A-Za-z]+)\r\n", packed)
            self.sent.append([name.decode().upper() for name in names])
            await original(conn, command, check_health)

        monkeypatch.setattr(Connection, "send_packed_command", counting)

    def reset(self) -> None:
        self.sent.clear()


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
        assert round_trips.sent == [["GET"], ["EVALSHA"]]
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


async def test_a_stale_route_after_rotation_is_refused(
    ward: Ward, url: str, clock: FakeClock, settings: Settings, raw: aioredis.Redis
) -> None:
    new = await ward.sessions.create("alice")
    async with open_ward(url, settings=settings, clock=clock, sweep=False) as other:
        await other.sessions.validate(new.token)  # caches the route
        rotated = await ward.sessions.rotate(new.token)
        with pytest.raises(UnknownSession):
            await other.sessions.validate(new.token)  # the cached route is stale
        assert (await other.sessions.validate(rotated.token)).generation == 2
    p = prefix(url)
    assert not await raw.exists(f"{p}:t:{hash_token(new.token)}")
    assert await raw.exists(f"{p}:t:{hash_token(rotated.token)}")


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
        assert listener.connections() == 1 + 4  # a read is retried, by the Retrier alone
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
    kwargs = _connection_kwargs(options)
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
    """A random sequence of store calls over a few users, sessions and documents."""

    USERS = ("alice", "{u:bob}", "a:b")

    def __init__(self, seed: int, clock: FakeClock) -> None:
        self.rng = random.Random(seed)
        self.clock = clock
        self.sessions: list[tuple[str, str, str]] = []  # user, session id, first token hash
        self.hashes: list[str] = []  # every token hash handed out, current or not
        self.scope_used: StateScope | None = None  # by the last state operation
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
                           "sweep"])  # fmt: skip
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


Op = Callable[[Store], Awaitable[object]]


async def dead_session_scope(store: Store, scope: StateScope | None) -> bool:
    if scope is None or scope.session_id is None:
        return False
    found = await store.find_session(ById(scope.user_id, scope.session_id), touch_interval=None)
    return found.row is None or not found.row.is_live(found.now)


async def outcome(op: Op, store: Store) -> object:
    try:
        return await op(store)
    except SessionwardError as exc:  # e.g. a session id collision: the same on both
        return type(exc)


@pytest.mark.parametrize("seed", range(4))
async def test_same_results_as_the_memory_store(url: str, seed: int) -> None:
    clock = FakeClock()
    reference, store = create_store("memory://", clock=clock), create_store(url, clock=clock)
    await reference.open()
    await store.open()
    script = Script(seed, clock)
    try:
        for step in range(400):
            kind, op = script.step()
            if op is None:
                continue
            if kind == "delete" and await dead_session_scope(reference, script.scope_used):
                # memory deletes a dead session's document; we refuse, as put does
                written = await op(store)
                assert isinstance(written, StateWrite) and not written.owner_live
                await op(reference)
                continue
            expected = await outcome(op, reference)
            assert await outcome(op, store) == expected, (step, kind)
    finally:
        await store.aclose()
