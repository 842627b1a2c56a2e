"""Backends for the tests: real SQLite files, a real Redis and a real PostgreSQL.

Server URLs come from SESSIONWARD_TEST_REDIS_URL and SESSIONWARD_TEST_POSTGRES_URL; the
``redis-cluster`` backend is a Redis Cluster of 6 local ``redis-server`` processes that the
session-scoped ``redis_cluster`` fixture starts on first use (tests/cluster.py). Every
test gets its own Redis key prefix or PostgreSQL schema, unique to this run, and they are
removed at the end, so runs and tests never see each other's data. Under CI=true a server
that does not answer fails the run; elsewhere its tests are skipped with the reason.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.cluster import Cluster

REDIS_URL = os.environ.get("SESSIONWARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "SESSIONWARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
RUN_ID = uuid.uuid4().hex[:10]
BACKENDS = ["memory", "sqlite", "redis", "postgresql"]
SHARED_BACKENDS = ["sqlite", "redis", "postgresql"]
_counter = itertools.count()
_used_schemas: list[str] = []
_cluster: list[Cluster] = []  # the running test cluster, once started


def _answers(url: str, default_port: int) -> str | None:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return None
    except OSError as exc:
        return f"{parts.scheme} server at {parts.hostname}:{parts.port} does not answer: {exc}"


def require_server(backend: str) -> None:
    problem = None
    if backend == "redis":
        problem = _answers(REDIS_URL, 6379)
    elif backend == "postgresql":
        problem = _answers(POSTGRES_URL, 5432)
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {problem}", pytrace=False)
    pytest.skip(problem)


def _with_option(url: str, option: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{option}"


def url_for(backend: str, tmp_path: Path) -> str:
    """A fresh, isolated store URL for one test."""
    require_server(backend)
    n = next(_counter)
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'sessionward.db'}"
    if backend == "redis":
        return _with_option(REDIS_URL, f"key_prefix=swtest-{RUN_ID}-{n}")
    if backend == "redis-cluster":
        assert _cluster, "a redis-cluster URL needs the redis_cluster fixture"
        return f"{_cluster[0].url}/?key_prefix=swtest-{RUN_ID}-{n}"
    schema = f"swtest_{RUN_ID}_{n}"
    _used_schemas.append(schema)
    return _with_option(POSTGRES_URL, f"schema={schema}")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "redis-cluster":
        request.getfixturevalue("redis_cluster")
    return url_for(backend, tmp_path)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A Redis Cluster of 3 primaries and 3 replicas on free loopback ports, for the session."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        problem = "redis-server and redis-cli are needed for the Redis Cluster tests"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {problem}", pytrace=False)
        pytest.skip(problem)
    cluster = Cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        _cluster.append(cluster)
        yield cluster
    finally:
        _cluster.clear()
        cluster.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _drop_test_data() -> Iterator[None]:
    yield
    _drop_redis_keys()
    _drop_postgres_schemas()


def _drop_redis_keys() -> None:
    if _answers(REDIS_URL, 6379) is not None:
        return
    import redis

    client = redis.Redis.from_url(REDIS_URL.split("?")[0])
    try:
        for key in client.scan_iter(match=f"swtest-{RUN_ID}-*", count=1000):
            client.delete(key)
    finally:
        client.close()


def _drop_postgres_schemas() -> None:
    if not _used_schemas or _answers(POSTGRES_URL, 5432) is not None:
        return
    import psycopg

    with psycopg.connect(POSTGRES_URL.split("?")[0], autocommit=True) as conn:
        for schema in _used_schemas:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
