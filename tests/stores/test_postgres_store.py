"""PostgreSQL-specific behaviour, against the real server: schema, clock, pool, failures.

What every backend shares is proven by the conformance suite; these tests cover what only
this store has: its schema and migrations, its round trips, its pool and its failure modes.
"""

from __future__ import annotations

import gc
import random
import socket
import tempfile
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import psycopg
import pytest
from psycopg import pq

from sessionward.clock import FakeClock
from sessionward.errors import ConfigurationError, StorageError, StorageUnavailable
from sessionward.rules.sessions import stamp_new_session
from sessionward.stores import create_store
from sessionward.stores.postgres import PostgresStore
from sessionward.stores.postgres.schema import LATEST, lock_key, migrate
from sessionward.stores.protocols import Store
from sessionward.stores.records import (
    ById,
    ByToken,
    GcraCheck,
    NewSessionRow,
    NewUserRow,
    SessionKey,
    StateRow,
    StateScope,
    UserChange,
)
from sessionward.testing.races import race, run_in_processes
from sessionward.testing.waiting import wait_until_async
from tests.conftest import POSTGRES_URL, url_for

pytestmark = pytest.mark.anyio
BACKEND = "postgresql"  # tests/stores/conftest.py: url, clock, store, raw
SERVER = POSTGRES_URL.split("?")[0]
TABLES = {
    "sw_schema_version",
    "sw_sessions",
    "sw_instances",
    "sw_state",
    "sw_spent_tokens",
    "sw_users",
    "sw_limits",
    "sw_budgets",
    "sw_user_budgets",
    "sw_ledger",
    "sw_holds",
    "sw_jobs",
    "sw_job_queues",
}


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


def _rows(query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        return conn.execute(query).fetchall()


def _versions(schema: str) -> list[tuple[int, object]]:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        query = f'SELECT version, applied_at FROM "{schema}".sw_schema_version ORDER BY version'
        return [(int(v), at) for v, at in conn.execute(query).fetchall()]


# schema


async def test_tables_live_in_the_named_schema_only(store: Store, url: str) -> None:
    tables = _tables_by_schema()
    assert tables[_schema(url)] == TABLES
    assert "public" not in tables
    functions = _rows(
        "SELECT n.nspname FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace "
        "WHERE p.proname = 'sw_gcra'"
    )
    assert (_schema(url),) in functions and ("public",) not in functions


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


async def test_a_version_1_schema_is_migrated_and_keeps_its_data(
    url: str, clock: FakeClock
) -> None:
    schema = _schema(url)
    row = stamp_new_session(_new(), clock.now())
    v1 = {k: v for k, v in asdict(row).items() if k not in ("prev_token_hash", "rotated_at")}
    async with await psycopg.AsyncConnection.connect(SERVER, autocommit=True) as conn:
        assert await migrate(conn, schema, target=1) == 0
        columns = ", ".join(v1)
        values = ", ".join(f"%({k})s" for k in v1)
        await conn.execute(f'INSERT INTO "{schema}".sw_sessions ({columns}) VALUES ({values})', v1)
        await conn.execute(
            f'INSERT INTO "{schema}".sw_state VALUES (%s, %s, %s, %s, %s, %s)',
            ["session", "alice", "sid-0", "doc", "1", 1],
        )
    assert [v for v, _ in _versions(schema)] == [1]
    assert _tables_by_schema()[schema] == {"sw_schema_version", "sw_sessions", "sw_state"}

    store = create_store(url, clock=clock)
    await store.open()
    try:
        assert [v for v, _ in _versions(schema)] == list(range(1, LATEST + 1))
        assert _tables_by_schema()[schema] == TABLES
        found = await store.find_session(ByToken("hash-0"), touch_interval=None)
        assert found.row == row  # never rotated: prev_token_hash and rotated_at are None
        scope = StateScope("session", "alice", "sid-0")
        assert await store.get_state(scope, "doc") == StateRow("1", 1)
        clock.advance(5)
        done = await store.refresh_session("hash-0", "hash-1", grace=10)
        assert done.outcome == "rotated" and done.row is not None
        assert (done.row.prev_token_hash, done.row.rotated_at) == ("hash-0", clock.now())
        assert (await store.refresh_session("hash-0", "hash-X", grace=10)).outcome == "reused"
        assert await store.get_state(scope, "doc") is None  # the reuse revoked it
    finally:
        await store.aclose()


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
    return (await _traced(store, call))[0]


async def _traced(store: Store, call: Any) -> tuple[int, Any]:
    """Run ``call`` on the store's only connection under a libpq trace; count the round
    trips (each ends with a Sync, or is one simple Query); return them and its result."""
    pool = store._pool  # type: ignore[attr-defined]
    with tempfile.TemporaryFile("w+") as trace:
        async with pool.connection() as conn:
            conn.pgconn.trace(trace.fileno())
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        result = await call
        async with pool.connection() as conn:
            conn.pgconn.untrace()
        trace.seek(0)
        sent = [line.split("\t") for line in trace if line.startswith("F\t")]
    return sum(fields[2].split()[0] in ("Sync", "Query") for fields in sent), result


async def test_validate_is_one_round_trip(tmp_path: Path, clock: FakeClock) -> None:
    store = create_store(url_for("postgresql", tmp_path) + "&pool_min=1&pool_max=1", clock=clock)
    await store.open()
    try:
        await store.create_session(_new(), max_sessions=3, evict_oldest=False)
        keys: list[SessionKey] = [ByToken("hash-0"), ById("alice", "sid-0")]
        for key in keys * 6:  # warm: prepared
            await store.find_session(key, touch_interval=60)
        for key in keys:
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


async def _one_connection_store(tmp_path: Path, clock: FakeClock) -> Store:
    store = create_store(url_for("postgresql", tmp_path) + "&pool_min=1&pool_max=1", clock=clock)
    await store.open()
    return store


async def test_gcra_is_one_round_trip(tmp_path: Path, clock: FakeClock) -> None:
    store = await _one_connection_store(tmp_path, clock)
    try:
        checks = [GcraCheck("a", 1.0, 2.0, 1), GcraCheck("b", 1.0, 10.0, 1)]
        for _ in range(6):  # warm: prepared
            await store.gcra(checks, apply=False)
        expected = [(True, True), (True, True), (False, True)]
        for allowed in expected:  # new rows, existing rows, then a refusal
            trips, result = await _traced(store, store.gcra(checks))
            assert (trips, result.allowed) == (1, allowed)
        trips, peek = await _traced(store, store.gcra(checks, apply=False))
        assert (trips, peek.tats) == (1, (clock.now() + 3, clock.now() + 3))
    finally:
        await store.aclose()


async def test_round_trips_of_refresh_users_and_limits(tmp_path: Path, clock: FakeClock) -> None:
    store = await _one_connection_store(tmp_path, clock)
    try:
        await store.create_session(_new(), max_sessions=3, evict_oldest=False)
        user = NewUserRow("id-a", "Ann", "ann", "h1", ("user",))
        rehash = UserChange(password_hash="h2", expected_hash="h1")
        refresh = partial(store.refresh_session, grace=10)
        expected: list[tuple[Callable[[], Awaitable[object]], int]] = [
            (partial(refresh, "hash-0", "hash-1"), 4),  # BEGIN, lock, rotate, COMMIT
            (partial(refresh, "hash-0", "hash-1"), 3),  # a replay writes nothing
            (partial(refresh, "nope", "hash-2"), 3),
            (partial(store.create_user, user), 3),  # BEGIN, INSERT, COMMIT
            (partial(store.get_user, "id-a"), 1),
            (partial(store.find_user, "ann"), 1),
            (partial(store.list_users, after=None, limit=10), 1),
            (partial(store.update_user, "id-a", UserChange(disabled=True)), 1),
            (partial(store.update_user, "id-a", rehash), 3),  # a compare-and-set: a transaction
            (partial(store.reset_limits, ["a", "b"]), 1),
            (partial(store.sweep_limits, 100), 1),
        ]
        trips = [await _round_trips(store, call()) for call, _ in expected]
        assert trips == [n for _, n in expected]
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
    async def holds() -> bool:
        return bool(condition())  # type: ignore[operator]

    await wait_until_async(holds, timeout=deadline, what="the condition", interval=0.01)


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


def _kill_at_next_commit(schema: str, table: str = "sw_state") -> None:
    """Make the next COMMIT that wrote a row of ``table`` lose its connection: a deferred
    trigger terminates its own backend once (a sequence, which rollback does not undo,
    counts)."""
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
                ON "{schema}".{table} DEFERRABLE INITIALLY DEFERRED
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


async def test_a_decision_that_lost_its_commit_is_not_repeated(store: Store, url: str) -> None:
    check = GcraCheck("k", period=1.0, capacity=10.0, cost=1)
    await store.gcra([check])
    _kill_at_next_commit(_schema(url), "sw_limits")
    with pytest.raises(StorageUnavailable):
        await store.gcra([check])
    assert _commits(_schema(url)) == 1  # one attempt reached COMMIT; none was repeated
    peek = await store.gcra([check], apply=False)
    assert peek.tats[0] - peek.now == 2  # the server aborted it: one unit spent, not two


async def test_a_refresh_that_lost_its_commit_is_not_repeated(store: Store, url: str) -> None:
    await store.create_session(_new(), max_sessions=3, evict_oldest=False)
    _kill_at_next_commit(_schema(url), "sw_sessions")
    with pytest.raises(StorageUnavailable):
        await store.refresh_session("hash-0", "hash-1", grace=0)
    assert _commits(_schema(url)) == 1
    # Repeated, it would have found its own rotation past the grace, and revoked the session.
    again = await store.refresh_session("hash-0", "hash-1", grace=0)
    assert again.outcome == "rotated"


# rotation history


def _spent(schema: str) -> set[tuple[str, str]]:
    rows = _rows(f'SELECT token_hash, session_id FROM "{schema}".sw_spent_tokens')
    return {(str(t), str(s)) for t, s in rows}


async def test_spent_hashes_are_swept_with_their_session(
    store: Store, url: str, clock: FakeClock
) -> None:
    await store.create_session(_new(0), max_sessions=3, evict_oldest=False)
    await store.create_session(_new(1, user="bob"), max_sessions=3, evict_oldest=False)
    await store.refresh_session("hash-0", "a1", grace=10)
    await store.refresh_session("a1", "a2", grace=10)
    rotated = await store.rotate_session(ById("alice", "sid-0"), "a3")
    assert rotated.row is not None
    assert (rotated.row.prev_token_hash, rotated.row.generation) == ("a2", 4)
    clock.advance(1000)
    await store.refresh_session("hash-1", "b1", grace=10)
    await store.revoke_session(ById("bob", "sid-1"))  # a revoked session keeps its history
    alice = {("hash-0", "sid-0"), ("a1", "sid-0"), ("a2", "sid-0")}
    assert _spent(_schema(url)) == alice | {("hash-1", "sid-1")}
    assert await store.sweep_sessions(100) == 0
    assert _spent(_schema(url)) == alice | {("hash-1", "sid-1")}
    clock.advance(800)  # alice idle since her rotation 1800 s ago; bob was touched later
    assert await store.sweep_sessions(100) == 1
    assert _spent(_schema(url)) == {("hash-1", "sid-1")}
    assert (await store.refresh_session("a2", "a3", grace=10)).outcome == "unknown"
    assert (await store.refresh_session("hash-1", "b1", grace=10)).outcome == "reused"
    clock.advance(1000)
    assert await store.sweep_sessions(100) == 1
    assert _spent(_schema(url)) == set()


async def test_refreshes_from_two_pools_get_one_successor(url: str, clock: FakeClock) -> None:
    stores = [create_store(url, clock=clock), create_store(url, clock=clock)]
    for one in stores:
        await one.open()
    try:
        await stores[0].create_session(_new(), max_sessions=3, evict_oldest=False)
        calls = [partial(stores[n % 2].refresh_session, "hash-0", "t1", grace=5) for n in range(20)]
        outcomes = await race(calls)
        assert sorted(o.outcome for o in outcomes) == ["replayed"] * 19 + ["rotated"]
        assert {o.row.generation for o in outcomes} == {2}
    finally:
        for one in stores:
            await one.aclose()


async def _until_blocked(schema: str, query_part: str) -> None:
    def blocked() -> bool:
        rows = _rows(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            f"AND query LIKE '%{schema}%' AND query LIKE '%{query_part}%'"
        )
        return bool(rows[0][0])

    await _until(blocked)


async def test_a_waiter_reads_the_clock_after_the_lock(url: str) -> None:
    """On the server's clock, a decision or refresh that waited for a row lock is judged at
    the time it got the lock, never before the holder committed."""
    schema = _schema(url)
    store = create_store(url)
    await store.open()
    results: dict[str, Any] = {}

    async def run(name: str, call: Any) -> None:
        results[name] = await call()

    check = GcraCheck("k", period=1.0, capacity=10.0, cost=1)
    try:
        await store.create_session(_new(), max_sessions=3, evict_oldest=False)
        await store.gcra([check])
        for name, lock, waiting, call in [
            ("gcra", "sw_limits WHERE key = 'k'", "sw_gcra", partial(store.gcra, [check])),
            (
                "refresh",
                "sw_sessions WHERE session_id = 'sid-0'",
                "target",  # a name in the statement that locks for a refresh
                partial(store.refresh_session, "hash-0", "hash-1", grace=0),
            ),
        ]:
            async with await psycopg.AsyncConnection.connect(SERVER) as holder:
                await holder.execute(f'SELECT 1 FROM "{schema}".{lock} FOR UPDATE')
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(run, name, call)
                    await _until_blocked(schema, waiting)
                    cur = await holder.execute("SELECT extract(epoch FROM clock_timestamp())")
                    released = float((await cur.fetchone())[0])  # type: ignore[index]
                    await holder.commit()
            assert results[name].now >= released
        assert results["refresh"].row.rotated_at == results["refresh"].now
    finally:
        await store.aclose()


# users and limits


async def test_users_list_in_code_point_order(store: Store) -> None:
    """``username_key`` compares as Python's sorted() does, whatever the database's collation."""
    keys = ["b", "B", "a", "Z", "é", "e", "zz", "ß", "_x", "ä", "A1", "a10", "a9", "😀", "\uff41"]
    for key in keys:
        assert await store.create_user(NewUserRow(f"id-{key}", key, key, "h", ())) is not None
    assert [u.username_key for u in await store.list_users(after=None, limit=100)] == sorted(keys)
    pages: list[str] = []
    after = None
    while page := await store.list_users(after=after, limit=4):
        pages += [u.username_key for u in page]
        after = page[-1].username_key
    assert pages == sorted(keys)
    assert await store.list_users(after=None, limit=0) == []
    assert await store.create_user(NewUserRow("id-b", "other", "other", "h", ())) is None


async def test_gcra_matches_the_memory_store(store: Store, clock: FakeClock) -> None:
    """Random decisions (duplicate keys, refunds, peeks, locks, resets, sweeps) give results
    identical to the reference, float for float."""
    reference = create_store("memory://", clock=clock)
    await reference.open()
    rng = random.Random(20240611)
    keys = ["a", "b", "c"]
    for _ in range(400):
        roll = rng.random()
        if roll < 0.05:
            picked = rng.sample(keys, rng.randint(1, 2))
            await store.reset_limits(picked)
            await reference.reset_limits(picked)
        elif roll < 0.1:
            assert await store.sweep_limits(2) == await reference.sweep_limits(2)
        elif roll < 0.3:
            clock.advance(rng.choice([0.25, 0.5, 1.0, 3.0]))
        else:
            checks = [
                GcraCheck(
                    rng.choice(keys),
                    period=rng.choice([0.5, 1.0, 2.0]),
                    capacity=rng.choice([0.0, 1.0, 4.0, 6.5]),
                    cost=rng.choice([-2, -1, 0, 1, 1, 1, 2]),
                )
                for _ in range(rng.randint(1, 3))
            ]
            apply = rng.random() < 0.85
            assert await store.gcra(checks, apply=apply) == await reference.gcra(
                checks, apply=apply
            )
    await reference.aclose()


async def test_a_refused_or_peeked_decision_leaves_no_rows(
    store: Store, url: str, clock: FakeClock
) -> None:
    full = GcraCheck("full", period=1.0, capacity=1.0, cost=1)
    await store.gcra([full])
    refused = await store.gcra([GcraCheck("fresh", 1.0, 10.0, 1), full])
    assert refused.allowed == (True, False)
    await store.gcra([GcraCheck("peeked", 1.0, 10.0, 1)], apply=False)
    rows = _rows(f'SELECT key, tat FROM "{_schema(url)}".sw_limits')
    assert rows == [("full", clock.now() + 1)]


async def test_multi_key_decisions_never_deadlock(store: Store) -> None:
    """Raw calls of sw_gcra (no retries to hide a deadlock) on overlapping keys in every
    order, with resets deleting rows under them, from many connections at once."""
    keys = ["a", "b", "c", "d", "e"]
    statements = store._sql  # type: ignore[attr-defined]
    done: list[str] = []

    async def worker(n: int) -> None:
        rng = random.Random(n)
        async with await psycopg.AsyncConnection.connect(SERVER, autocommit=True) as conn:
            for _ in range(60):
                picked = rng.sample(keys, rng.randint(1, len(keys)))
                if rng.random() < 0.2:
                    await conn.execute(statements.reset_limits, {"keys": picked})
                    done.append("reset")
                    continue
                params = {
                    "keys": picked,
                    "periods": [0.001] * len(picked),
                    "capacities": [rng.choice([0.0, 1.0]) for _ in picked],
                    "costs": [1.0] * len(picked),
                    "apply": True,
                    "now": None,
                }
                await conn.execute(statements.gcra, params)
                done.append("gcra")

    async with anyio.create_task_group() as tasks:
        for n in range(12):
            tasks.start_soon(worker, n)
    # every call of every connection returned (a deadlock would have raised in its worker)
    assert len(done) == 12 * 60 and {"gcra", "reset"} <= set(done)


HOT = GcraCheck("hot", period=60.0, capacity=50 * 60.0, cost=1)  # 50 per hour


async def _gcra_child(url: str, attempts: int, barrier: Any) -> int:
    """A spawned process: its own pool and its own FakeClock (at the same fixed instant)."""
    store = create_store(url, clock=FakeClock())
    await store.open()
    try:
        await anyio.to_thread.run_sync(barrier.wait)
        outcomes = await race([partial(store.gcra, [HOT])] * attempts)
    finally:
        await store.aclose()
    errors = [o for o in outcomes if isinstance(o, Exception)]
    if errors:
        raise errors[0]
    return sum(o.allowed[0] for o in outcomes)


async def test_four_processes_admit_exactly_the_limit(url: str, clock: FakeClock) -> None:
    store = create_store(url, clock=clock)
    await store.open()  # the schema exists before the children race
    try:
        admitted = await run_in_processes([(_gcra_child, (url, 40))] * 4)
        assert sum(admitted) == 50
        peek = await store.gcra([HOT], apply=False)
        assert peek.tats[0] == clock.now() + 51 * 60  # exactly 50 stored, none lost
    finally:
        await store.aclose()
