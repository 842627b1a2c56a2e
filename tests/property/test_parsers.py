"""Properties of the parsers of configuration text: storage URLs (``urls.py``) and rate-limit
policies (``rate_policy.py``). Whatever the text, a parse either succeeds with exactly what
was written, or refuses with :class:`ConfigurationError`; never another exception."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import example, given
from hypothesis import strategies as st

from sessionward.errors import ConfigurationError
from sessionward.rate_policy import _UNITS, Policy, parse_policy
from sessionward.urls import parse_store_url

from . import profiles  # noqa: F401 (loads the settings profile)

hostile = st.text(st.characters(codec=None), max_size=80) | st.text(
    st.characters(categories=["Cc", "Cs", "Zs", "Po"]), max_size=20
)
SCHEMES = ["memory", "sqlite", "redis", "rediss", "redis+unix", "unix", "postgresql",
           "postgres", "http", ""]  # fmt: skip


def _parse_or_refuse(url: str) -> object:
    try:
        return parse_store_url(url)
    except ConfigurationError as exc:
        refusal = str(exc)
    assert refusal  # one sentence saying what is wrong
    return None


def _drivers_can_take(values: dict[str, object]) -> None:
    """No option a driver, file system or server would choke on: NUL, a lone surrogate."""
    for name, value in values.items():
        text = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        if isinstance(text, str):
            assert "\x00" not in text, name
            text.encode()


@given(st.sampled_from(SCHEMES), hostile)
@example("sqlite", "/a\x00b.db")
@example("redis", "h\x00st:6379/0")
@example("postgresql", "u@h/db?schema=a\x00b")
@example("redis", "h:6379/0?key_prefix=\ud800")
@example("sqlite", "/a.db?readers=99999999999999999999999")
def test_any_url_parses_or_is_refused_with_a_configuration_error(scheme: str, rest: str) -> None:
    found = _parse_or_refuse(f"{scheme}://{rest}")
    if found is not None:
        _drivers_can_take(found.options.model_dump())


@given(st.text(st.characters(codec=None), max_size=60))
@example("a\x00b.db")
@example("dir/\ud800.db")
def test_a_sqlite_path_round_trips_or_is_refused(path: str) -> None:
    found = _parse_or_refuse(f"sqlite:///{quote(path, safe='', errors='surrogatepass')}")
    if found is not None:
        assert found.options.path == path  # type: ignore[union-attr]
        path.encode()  # only what a file system call can take


@given(
    host=st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True),
    port=st.integers(1, 65535),
    db=st.integers(0, 10_000),
    password=st.text(st.characters(codec=None), min_size=1, max_size=30),
    prefix=st.text(st.characters(codec=None), max_size=30),
)
def test_a_redis_url_round_trips_and_hides_its_password(
    host: str, port: int, db: int, password: str, prefix: str
) -> None:
    secret = quote(password, safe="", errors="surrogatepass")
    key_prefix = quote(prefix, errors="surrogatepass")
    url = f"redis://user:{secret}@{host}:{port}/{db}?key_prefix={key_prefix}"
    found = _parse_or_refuse(url)
    if found is None:
        return
    options = found.options
    assert (options.host, options.port, options.db) == (host, port, db)  # type: ignore[union-attr]
    assert options.password.get_secret_value() == password  # type: ignore[union-attr]
    assert options.key_prefix == prefix  # type: ignore[union-attr]
    assert f":{secret}@" not in repr(found) and "user:***@" in str(found)
    if len(password) > 3:
        assert password not in repr(found) and password not in repr(options)


@given(
    dbname=st.text(st.characters(codec=None), min_size=1, max_size=30),
    user=st.text(st.characters(codec=None), min_size=1, max_size=30),
    schema=st.text(st.characters(codec=None), min_size=1, max_size=30),
)
def test_a_postgres_url_round_trips_or_is_refused(dbname: str, user: str, schema: str) -> None:
    q = lambda text: quote(text, safe="", errors="surrogatepass")  # noqa: E731
    found = _parse_or_refuse(f"postgresql://{q(user)}@127.0.0.1/{q(dbname)}?schema={q(schema)}")
    if found is None:
        return
    options = found.options
    assert (options.user, options.dbname, options.schema_name) == (user, dbname, schema)  # type: ignore[union-attr]
    for text in (user, dbname, schema):
        assert "\x00" not in text
        text.encode()


# rate-limit policies

limits = st.builds(
    lambda count, every, unit, burst: (count, every, unit, burst),
    st.integers(1, 10**9 - 1), st.one_of(st.none(), st.integers(1, 10**9 - 1)),
    st.sampled_from(sorted(_UNITS)), st.one_of(st.none(), st.integers(1, 10**9 - 1)),
)  # fmt: skip


def _text(count: int, every: int | None, unit: str, burst: int | None) -> str:
    per = f"{count} per {every} {unit}" if every is not None else f"{count}/{unit}"
    return per if burst is None else f"{per} burst {burst}"


@given(st.lists(limits, min_size=1, max_size=8))
def test_a_policy_means_what_it_says_and_prints_back_to_itself(
    written: list[tuple[int, int | None, str, int | None]],
) -> None:
    policy = parse_policy(";".join(_text(*limit) for limit in written))
    for limit, (count, every, unit, burst) in zip(policy.limits, written, strict=True):
        assert (limit.count, limit.burst) == (count, burst or count)
        assert limit.window == (every or 1) * _UNITS[unit]
        # (past ~1e12 s the 1 ms slack is below a float's resolution, so only <=)
        assert limit.interval > 0 and limit.burst * limit.interval <= limit.capacity
    again = parse_policy(str(policy))
    assert again == policy and isinstance(again, Policy)


@given(hostile)
@example("10/second;" * 9)
@example("0/second")
@example("1/second burst 0")
@example("1\x00/second")
@example("٣/second")  # a digit \d matches, int() takes, but no one means
def test_any_policy_text_parses_or_is_refused(text: str) -> None:
    try:
        policy = parse_policy(text)
    except ConfigurationError as exc:
        refusal = str(exc)
        assert "accepted" in refusal or "at most" in refusal
        return
    assert parse_policy(str(policy)) == policy
    assert all(limit.count >= 1 and limit.burst >= 1 for limit in policy.limits)
