from __future__ import annotations

import pytest

from sessionward import ConfigurationError, Settings, parse_store_url
from sessionward.stores import create_store
from sessionward.urls import PostgresOptions, RedisOptions, SqliteOptions


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        ("memory://", "memory"),
        ("sqlite:///sessionward.db", "sqlite"),
        ("sqlite:////var/lib/app/s.db", "sqlite"),
        ("redis://localhost:6379/2?key_prefix=app", "redis"),
        ("rediss://user:pw@cache.example:6380/0", "redis"),
        ("redis+unix:///run/redis.sock?db=3", "redis"),
        ("redis+cluster://10.0.0.1:7000,10.0.0.2:7001/?key_prefix=app", "redis"),
        ("rediss+cluster://u:pw@a:7000,b/?job_shards=8&wait_replicas=1", "redis"),
        ("postgresql://app@db/prod?schema=sw&pool_max=20", "postgresql"),
        ("postgres://app@db/prod", "postgresql"),
    ],
)
def test_accepted_urls(url: str, backend: str) -> None:
    assert parse_store_url(url).backend == backend


def test_sqlite_paths() -> None:
    relative = parse_store_url("sqlite:///data/s.db").options
    absolute = parse_store_url("sqlite:////tmp/s.db?busy_timeout=2.5&readers=4").options
    assert isinstance(relative, SqliteOptions) and relative.path == "data/s.db"
    assert isinstance(absolute, SqliteOptions)
    assert (absolute.path, absolute.busy_timeout, absolute.readers) == ("/tmp/s.db", 2.5, 4)


def test_redis_options_are_typed() -> None:
    options = parse_store_url("rediss://u:p%40ss@h:6380/5?max_connections=7").options
    assert isinstance(options, RedisOptions)
    assert (options.host, options.port, options.db, options.ssl) == ("h", 6380, 5, True)
    assert options.max_connections == 7 and options.username == "u"
    assert options.password is not None and options.password.get_secret_value() == "p@ss"


def test_cluster_urls_list_their_startup_nodes() -> None:
    options = parse_store_url("rediss+cluster://u:pw@a:7000,[::1]:7001,b/?job_shards=4").options
    assert isinstance(options, RedisOptions) and options.cluster and options.ssl
    assert options.nodes == (("a", 7000), ("::1", 7001), ("b", 6379))
    assert (options.host, options.port, options.job_shards) == ("a", 7000, 4)
    plain = parse_store_url("redis://h/0").options
    assert isinstance(plain, RedisOptions) and not plain.cluster and plain.job_shards == 1


def test_postgres_options_are_typed() -> None:
    options = parse_store_url("postgresql://app:pw@db:5433/prod?schema=tenant_1").options
    assert isinstance(options, PostgresOptions)
    assert (options.host, options.port, options.dbname, options.user) == ("db", 5433, "prod", "app")
    assert options.schema_name == "tenant_1"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "not a storage URL"),
        ("localhost:6379", "not a storage URL"),
        ("mysql://db/x", "unknown storage URL scheme 'mysql'; use one of: memory://"),
        ("memory://host", "memory:// URL has no host"),
        ("memory://?max_entries=0", "max_entries"),
        ("sqlite://host/file.db", "sqlite URL has no host"),
        ("sqlite:///", "needs a file path"),
        ("sqlite:///:memory:", "use memory://"),
        ("sqlite:///x.db?readers=lots", "option readers='lots'"),
        ("sqlite:///x.db?journal=off", "unknown option 'journal'"),
        ("redis://h:99999", "Port out of range"),
        ("redis://h/notanumber", "option db='notanumber'"),
        ("redis://h?key_prefix=a%20b", "key_prefix"),
        ("redis://h?max_connections=0", "greater than or equal to 1"),
        ("redis://h?key_prefix=a&key_prefix=b", "given twice"),
        ("redis://h?password=x", "password belongs in the URL itself"),
        ("redis+unix://", "needs a socket path"),
        ("redis+cluster://a:1,b:x/", "'b:x' is not one"),
        ("redis+cluster://a:1/2", "Redis Cluster has only db 0"),
        ("redis+cluster://a:1/?nodes=b:2", "nodes belongs in the URL itself"),
        ("redis+cluster://a:1/?job_shards=0", "option job_shards='0'"),
        ("redis://h?wait_replicas=-1", "option wait_replicas='-1'"),
        ("postgresql://h/db?schema=Has-Dash", "option schema='Has-Dash'"),
        ("postgresql://h/db?poolsize=3", "accepted: application_name"),
        ("postgresql://h/db?user=x", "user belongs in the URL itself"),
        ("redis://h#frag", "no #fragment"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=None) as caught:
        parse_store_url(url)
    assert says in str(caught.value)


def test_unknown_option_lists_the_accepted_ones() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_store_url("redis://h?pool=3")
    message = str(caught.value)
    assert "unknown option 'pool' for a redis:// URL" in message
    assert "key_prefix" in message and "max_connections" in message


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:hunter2hunter2@h:6379/0",
        "rediss://:hunter2hunter2@h",
        "postgresql://app:hunter2hunter2@db/prod?schema=x",
        "redis+cluster://app:hunter2hunter2@a:7000,b:7001/",
    ],
)
def test_passwords_never_show(url: str) -> None:
    parsed = parse_store_url(url)
    shown = [repr(parsed), str(parsed), parsed.redacted(), repr(Settings(store=url))]
    shown.append(str(Settings(store=url).model_dump()))
    assert all("hunter2" not in text and "***" in text for text in shown[:3])
    assert all("hunter2" not in text for text in shown)


def test_bad_option_value_hides_a_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_store_url("redis://h?ssl_cert_reqs=maybe")
    assert "ssl_cert_reqs" in str(caught.value)


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "redis", None)  # makes `import redis` fail
    monkeypatch.delitem(sys.modules, "sessionward.stores.redis", raising=False)
    with pytest.raises(ConfigurationError) as caught:
        create_store("redis://127.0.0.1")
    assert "pip install 'sessionward[redis]'" in str(caught.value)
