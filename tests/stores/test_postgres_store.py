"""PostgreSQL-specific behaviour, against the real server: schema, clock, pool, failures.

What every backend shares is proven by the conformance suite; these tests cover what only
this store has: its schema and migrations, its round trips, its pool and its failure modes.
"""

from __future__ import annotations

import gc
import socket
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import psycopg
import pytest
from psycopg import pq

from sessionward.clock import FakeClock
from sessionward.errors import ConfigurationError, StorageError, StorageUnavailable
from sessionward.stores import create_store
from sessionward.stores.base import ById, ByToken, NewSessionRow, StateScope, Store
from sessionward.stores.postgres import PostgresStore
from sessionward.stores.postgres_schema import LATEST, lock_key, migrate
from tests.conftest import POSTGRES_URL, url_for

pytestmark = pytest.mark.anyio
SERVER = POSTGRES_URL.split("?")[0]
TABLES = {"sw_schema_version", "sw_sessions", "sw_state"}


def _schema(url: str) -> str:
    return parse_qs(urlsplit(url).query)["schema"][0]


def _new(n: int = 0, user: str = "alice") -> NewSessionRow:
    return NewSessionRow(f"sid-{n}", user, f"hash-{n}", 1800.0, 43200.0, None, None, "{}")


def _tables_by_schema() -> dict[str, set[str]]:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_name LIKE 'sw\\_%'"
        ).fetchall()
    found: dict[str, set[str]] = {}
    for schema, table in rows:
        found.setdefault(schema, set()).add(table)
    return found


def _versions(schema: str) -> list[tuple[int, object]]:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        query = f'SELECT version, applied_at FROM "{schema}".sw_schema_version ORDER BY version'
        return [(int(v), at) for v, at in conn.execute(query).fetchall()]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return url_for("postgresql", tmp_path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(url: str, clock: FakeClock) -> AsyncIterator[Store]:
    store = create_store(url, clock=clock)
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


# schema


async def test_tables_live_in_the_named_schema_only(store: Store, url: str) -> None:
    tables = _tables_by_schema()
    assert tables[_schema(url)] == TABLES
    assert "public" not in tables


async def test_version_is_recorded_and_reopening_changes_nothing(store: Store, url: str) -> None:
    before = _versions(_schema(url))
    assert [v for v, _ in before] == list(range(1, LATEST + 1))
    again = create_store(url)
    await again.open()
    await again.aclose()
    async with await psycopg.AsyncConnection.connect(SERVER, autocommit=True) as conn:
        assert await migrate(conn, _schema(url)) == LATEST  # nothing was left to apply
    assert _versions(_schema(url)) == before


async def test_fresh_schema_opened_by_many_at_once(url: str) -> None:
    stores = [create_store(url) for _ in range(6)]
    try:
        async with anyio.create_task_group() as tasks:
            for store in stores:
                tasks.start_soon(store.open)
        assert [v for v, _ in _versions(_schema(url))] == list(range(1, LATEST + 1))
        await stores[0].create_session(_new(), max_sessions=3, evict_oldest=False)
        assert (await stores[-1].find_session(ByToken("hash-0"), touch_interval=None)).row
    finally:
        for store in stores:
            await store.aclose()


async def test_a_newer_schema_is_refused(store: Store, url: str) -> None:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'INSERT INTO "{_schema(url)}".sw_schema_version (version) VALUES (99)')
    with pytest.raises(ConfigurationError, match="version 99"):
        await create_store(url).open()


async def test_schemas_are_isolated(store: Store, tmp_path: Path, clock: FakeClock) -> None:
    other = create_store(url_for("postgresql", tmp_path), clock=clock)
    await other.open()
    try:
        made = await store.create_session(_new(), max_sessions=1, evict_oldest=False)
        assert made.row is not None
        await store.put_state(StateScope("user", "alice"), "doc", "1", expected_version=None)
        assert (await other.find_session(ByToken("hash-0"), touch_interval=None)).row is None
        assert await other.get_state(StateScope("user", "alice"), "doc") is None
        # The same ids in another schema neither collide nor count against the cap.
        again = await other.create_session(_new(), max_sessions=1, evict_oldest=False)
        assert again.row is not None and again.evicted == ()
    finally:
        await other.aclose()


# time


async def test_expiry_follows_the_injected_clock(store: Store, clock: FakeClock) -> None:
    created = (await store.create_session(_new(), max_sessions=3, evict_oldest=False)).row
    assert created is not None and created.created_at == clock.now()
    clock.advance(1799.5)
    found = await store.find_session(ByToken("hash-0"), touch_interval=None)
    assert found.now == clock.now() and found.row is not None and found.row.is_live(found.now)
    clock.advance(0.5)
    found = await store.find_session(ByToken("hash-0"), touch_interval=60)
    assert found.row is not None and not found.row.is_live(found.now)
    assert found.row.last_seen_at == created.created_at  # a dead session is never touched
    assert await store.get_state(StateScope("session", "alice", "sid-0"), "x") is None


async def test_the_server_clock_is_used_when_none_is_injected(url: str) -> None:
    store = create_store(url)
    await store.open()
    try:
        made = await store.create_session(_new(), max_sessions=3, evict_oldest=False)
        found = await store.find_session(ByToken("hash-0"), touch_interval=0)
    finally:
        await store.aclose()
    assert made.row is not None and found.row is not None
    assert abs(found.now - time.time()) < 5  # the server runs on this machine
    assert made.row.created_at <= found.row.last_seen_at == found.now


# round trips


async def _round_trips(store: Store, call: object) -> int:
    """Run ``call`` on the store's only connection under a libpq trace; count the round
    trips (each ends with a Sync, or is one simple Query)."""
    pool = store._pool  # type: ignore[attr-defined]
    with tempfile.TemporaryFile("w+") as trace:
        async with pool.connection() as conn:
            conn.pgconn.trace(trace.fileno())
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        await call  # type: ignore[misc]
        async with pool.connection() as conn:
            conn.pgconn.untrace()
        trace.seek(0)
        sent = [line.split("\t") for line in trace if line.startswith("F\t")]
    return sum(fields[2].split()[0] in ("Sync", "Query") for fields in sent)


async def test_validate_is_one_round_trip(tmp_path: Path, clock: FakeClock) -> None:
    store = create_store(url_for("postgresql", tmp_path) + "&pool_min=1&pool_max=1", clock=clock)
    await store.open()
    try:
        await store.create_session(_new(), max_sessions=3, evict_oldest=False)
        for key in [ByToken("hash-0"), ById("alice", "sid-0")] * 6:  # warm: prepared
            await store.find_session(key, touch_interval=60)
        for key in (ByToken("hash-0"), ById("alice", "sid-0")):
            clock.advance(61)
            touched = store.find_session(key, touch_interval=60)
            assert await _round_trips(store, touched) == 1
            untouched = store.find_session(key, touch_interval=60)
            assert await _round_trips(store, untouched) == 1
        found = await store.find_session(ById("alice", "sid-0"), touch_interval=None)
        assert found.row is not None and found.row.last_seen_at == clock.now()
        rotate = store.rotate_session(ByToken("hash-0"), "hash-new")
        assert await _round_trips(store, rotate) == 3  # BEGIN, the statement, COMMIT
    finally:
        await store.aclose()


# state


async def test_concurrent_creators_of_one_document(store: Store) -> None:
    scope = StateScope("user", "alice")

    async def create(n: int) -> None:
        outcomes[n] = await store.put_state(scope, "doc", str(n), expected_version=0)

    outcomes: dict[int, object] = {}
    async with anyio.create_task_group() as tasks:
        for n in range(30):
            tasks.start_soon(create, n)
    applied = [w for w in outcomes.values() if getattr(w, "applied", False)]
    assert len(applied) == 1
    # every loser reports the winner's version, never "absent"
    assert {getattr(w, "version", None) for w in outcomes.values()} == {1}


async def test_concurrent_overwrites_are_all_counted(store: Store) -> None:
    scope = StateScope("session", "alice", "sid-0")
    await store.create_session(_new(), max_sessions=3, evict_oldest=False)
    versions: list[int | None] = []

    async def overwrite(n: int) -> None:
        versions.append((await store.put_state(scope, "d", str(n), expected_version=None)).version)

    async with anyio.create_task_group() as tasks:
        for n in range(30):
            tasks.start_soon(overwrite, n)
    assert sorted(v or 0 for v in versions) == list(range(1, 31))
    row = await store.get_state(scope, "d")
    assert row is not None and row.version == 30


async def test_cap_holds_across_two_pools(url: str, clock: FakeClock) -> None:
    stores = [create_store(url, clock=clock), create_store(url, clock=clock)]
    for store in stores:
        await store.open()
    made: list[bool] = []

    async def create(n: int) -> None:
        new = _new(n, user="racer")
        created = await stores[n % 2].create_session(new, max_sessions=3, evict_oldest=False)
        made.append(created.row is not None)

    try:
        async with anyio.create_task_group() as tasks:
            for n in range(20):
                tasks.start_soon(create, n)
        assert made.count(True) == 3
        rows, _ = await stores[0].list_sessions("racer")
        assert len(rows) == 3
    finally:
        for store in stores:
            await store.aclose()


# pool and failures


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_server_is_unavailable_in_bounded_time() -> None:
    url = (
        f"postgresql://sw:s3cret-pw@127.0.0.1:{_free_port()}/none?pool_timeout=1&connect_timeout=1"
    )
    store = create_store(url)
    assert "s3cret-pw" not in repr(store)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as failed:
        await store.open()
    assert time.monotonic() - started < 5
    assert not isinstance(failed.value, psycopg.Error)
    assert failed.value.__cause__ is not None
    assert "s3cret-pw" not in str(failed.value)
    assert store.pool_stats().in_use == 0


async def test_a_lost_connection_is_replaced_and_writes_retried(tmp_path: Path) -> None:
    name = f"swtest-{uuid.uuid4().hex[:12]}"
    url = url_for("postgresql", tmp_path) + f"&pool_min=1&pool_max=1&application_name={name}"
    store = create_store(url)
    await store.open()
    try:
        scope = StateScope("user", "alice")
        await store.put_state(scope, "doc", "1", expected_version=0)
        with psycopg.connect(SERVER, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s",
                [name],
            ).fetchone()
        assert killed == (1,)
        # The pooled connection is dead; the write fails before COMMIT, so it is retried.
        written = await store.put_state(scope, "doc", "2", expected_version=1)
        assert (written.applied, written.version) == (True, 2)
    finally:
        await store.aclose()


async def test_pool_stats(tmp_path: Path) -> None:
    url = url_for("postgresql", tmp_path) + "&pool_min=2&pool_max=3"
    store = create_store(url)
    await store.open()
    try:
        stats = store.pool_stats()
        assert (stats.in_use, stats.idle, stats.waiting, stats.max_size) == (0, 2, 0, 3)
        with psycopg.connect(SERVER, autocommit=True) as blocker:
            # Hold the user's lock, so that a create waits inside its transaction.
            blocker.execute("SELECT pg_advisory_lock(%s)", [lock_key(_schema(url), "user", "u")])
            async with anyio.create_task_group() as tasks:
                create = partial(store.create_session, max_sessions=3, evict_oldest=False)
                tasks.start_soon(create, _new(user="u"))
                await _until(lambda: store.pool_stats().in_use == 1)
                assert store.pool_stats().idle == 1
                blocker.execute("SELECT pg_advisory_unlock_all()")
        assert store.pool_stats().in_use == 0
    finally:
        await store.aclose()


async def _until(condition: object, deadline: float = 10.0) -> None:
    give_up = time.monotonic() + deadline
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < give_up, "condition not reached in time"
        await anyio.sleep(0.01)


async def test_ping_and_version(store: Store) -> None:
    assert 0 < await store.ping() < 1
    assert (await store.server_version()).split(".")[0].isdigit()


async def test_close_leaves_no_warnings_and_refuses_use(url: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = create_store(url)
        await store.open()
        await store.find_session(ByToken("x"), touch_interval=None)
        await store.aclose()
        await store.aclose()
        del store
        gc.collect()
    assert [str(w.message) for w in caught] == []


async def test_closed_store_raises_storage_error(url: str) -> None:
    store = create_store(url)
    with pytest.raises(StorageError, match="not open"):
        await store.find_session(ByToken("x"), touch_interval=None)
    await store.open()
    await store.aclose()
    with pytest.raises(StorageError):
        await store.list_state(StateScope("user", "alice"))


def test_pool_bounds_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="pool_min"):
        create_store(f"{SERVER}?pool_min=5&pool_max=2")
    assert isinstance(create_store(SERVER), PostgresStore)


def _kill_at_next_commit(schema: str) -> None:
    """Make the next COMMIT that wrote a state row lose its connection: a deferred trigger
    terminates its own backend once (a sequence, which rollback does not undo, counts)."""
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f"""
            CREATE SEQUENCE "{schema}".commits;
            CREATE FUNCTION "{schema}".kill_once() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('"{schema}".commits') = 1 THEN
                    PERFORM pg_terminate_backend(pg_backend_pid());
                    PERFORM pg_sleep(5);
                END IF;
                RETURN NULL;
            END $$;
            CREATE CONSTRAINT TRIGGER kill_once AFTER INSERT OR UPDATE OR DELETE
                ON "{schema}".sw_state DEFERRABLE INITIALLY DEFERRED
                FOR EACH ROW EXECUTE FUNCTION "{schema}".kill_once();
        """)  # fmt: skip


def _commits(schema: str) -> int:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        row = conn.execute(f'SELECT last_value FROM "{schema}".commits').fetchone()
    assert row is not None
    return int(row[0])


async def test_a_write_that_lost_its_commit_is_not_repeated(store: Store, url: str) -> None:
    scope = StateScope("user", "alice")
    await store.put_state(scope, "doc", "1", expected_version=0)
    _kill_at_next_commit(_schema(url))
    with pytest.raises(StorageUnavailable):
        await store.put_state(scope, "doc", "2", expected_version=1)
    assert _commits(_schema(url)) == 1  # one attempt reached COMMIT; none was repeated
    row = await store.get_state(scope, "doc")
    assert row is not None and row.version == 1  # the server aborted it


async def test_an_idempotent_write_that_lost_its_commit_is_repeated(store: Store, url: str) -> None:
    scope = StateScope("user", "alice")
    await store.put_state(scope, "doc", "1", expected_version=0)
    _kill_at_next_commit(_schema(url))
    deleted = await store.delete_state(scope, "doc", expected_version=None)
    assert deleted.applied and _commits(_schema(url)) == 2
    assert await store.get_state(scope, "doc") is None
