"""Storage URLs: one string picks the backend and its options.

    memory://?max_entries=100000
    sqlite:///relative/path.db          sqlite:////absolute/path.db
    redis://[user:password@]host[:port][/db]?key_prefix=app    rediss://...
    redis+unix:///run/redis.sock?db=0
    redis+cluster://host:port[,host:port...]/?key_prefix=app      rediss+cluster://...
    postgresql://user[:password]@host[:port]/dbname?schema=app  (postgres:// too)

A backend registered with :func:`sessionward.stores.register_backend` adds its own schemes
(:func:`register_scheme`): ``scheme://[user:password@][host][:port][/path]?options``, the
options checked by the model it names (default: :class:`MemoryOptions`).

Options are type-checked per backend; an unknown option or a malformed URL raises
:class:`~sessionward.errors.ConfigurationError` with a sentence that says what is accepted.
Passwords never appear in ``repr()`` or ``str()``: use :meth:`StoreURL.redacted`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, quote, urlsplit
from urllib.parse import unquote as _unquote_lossy

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from .errors import ConfigurationError

_PREFIX = r"^[A-Za-z0-9_.:-]{1,64}$"
_IDENTIFIER = r"^[a-z_][a-z0-9_]{0,62}$"

#: the built-in backends; a registered one may add any name
Backend = Literal["memory", "sqlite", "redis", "postgresql"]


class BackendOptions(BaseModel):
    """Base of every backend's URL options: unknown options are refused, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_Options = BackendOptions


class MemoryOptions(_Options):
    max_entries: Annotated[int, Field(ge=1)] = 100_000


class SqliteOptions(_Options):
    path: str
    busy_timeout: Annotated[float, Field(gt=0, le=600)] = 5.0
    readers: Annotated[int, Field(ge=1, le=16)] = 2
    synchronous: Literal["normal", "full"] = "normal"


class RedisOptions(_Options):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 6379
    db: Annotated[int, Field(ge=0)] = 0
    username: str | None = None
    password: SecretStr | None = None
    unix_socket_path: str | None = None
    ssl: bool = False
    ssl_ca_certs: str | None = None
    ssl_cert_reqs: Literal["required", "optional", "none"] = "required"
    key_prefix: Annotated[str, Field(pattern=_PREFIX)] = "sessionward"
    max_connections: Annotated[int, Field(ge=1, le=10_000)] = 50
    pool_timeout: Annotated[float, Field(gt=0, le=600)] = 5.0
    socket_timeout: Annotated[float, Field(gt=0, le=600)] = 5.0
    connect_timeout: Annotated[float, Field(gt=0, le=600)] = 5.0
    route_cache_size: Annotated[int, Field(ge=0, le=10_000_000)] = 10_000
    #: Redis Cluster (redis+cluster://): the startup nodes, from the URL's host list
    cluster: bool = False
    nodes: tuple[tuple[str, int], ...] = ()
    #: after each write script, ``WAIT wait_replicas`` (ms from ``wait_timeout`` seconds): the
    #: write is acknowledged only once that many replicas have it (0: no WAIT)
    wait_replicas: Annotated[int, Field(ge=0, le=16)] = 0
    wait_timeout: Annotated[float, Field(gt=0, le=60)] = 0.5
    #: job queues split over this many hash tags (1: one slot, exact fair order overall)
    job_shards: Annotated[int, Field(ge=1, le=64)] = 1


class PostgresOptions(_Options):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 5432
    dbname: str = "postgres"
    user: str | None = None
    password: SecretStr | None = None
    schema_name: Annotated[str, Field(pattern=_IDENTIFIER, alias="schema")] = "public"
    pool_min: Annotated[int, Field(ge=0, le=1000)] = 1
    pool_max: Annotated[int, Field(ge=1, le=1000)] = 10
    pool_timeout: Annotated[float, Field(gt=0, le=600)] = 5.0
    connect_timeout: Annotated[int, Field(ge=1, le=600)] = 5
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = (
        None
    )
    sslrootcert: str | None = None
    application_name: str = "sessionward"

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


StoreOptions = MemoryOptions | SqliteOptions | RedisOptions | PostgresOptions | BackendOptions

_SCHEMES: dict[str, str] = {
    "memory": "memory",
    "sqlite": "sqlite",
    "redis": "redis",
    "rediss": "redis",
    "redis+unix": "redis",
    "unix": "redis",
    "redis+cluster": "redis",
    "rediss+cluster": "redis",
    "postgresql": "postgresql",
    "postgres": "postgresql",
}
_ACCEPTED = (
    "memory://, sqlite:///path.db, redis://, rediss://, redis+unix://, redis+cluster://, "
    "postgresql://"
)


@dataclass(frozen=True, repr=False)
class StoreURL:
    """A parsed storage URL. Its ``repr`` and ``str`` hide any password."""

    backend: Backend | str
    scheme: str
    options: StoreOptions
    _redacted: str

    def redacted(self) -> str:
        return self._redacted

    def __repr__(self) -> str:
        return f"StoreURL({self._redacted!r})"

    def __str__(self) -> str:
        return self._redacted


def parse_store_url(url: str | StoreURL) -> StoreURL:
    """Parse and validate a storage URL, or raise :class:`ConfigurationError`."""
    if isinstance(url, StoreURL):
        return url
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"{_describe(url)} is not a storage URL; use one of: {_accepted()}"
        )
    if "\x00" in url or not _encodable(url):
        raise ConfigurationError("a storage URL cannot hold a NUL character or a lone surrogate")
    scheme = url.split("://", 1)[0].lower()
    backend = _SCHEMES.get(scheme)
    if backend is None:
        raise ConfigurationError(
            f"unknown storage URL scheme {scheme!r}; use one of: {_accepted()}"
        )
    try:
        parts = urlsplit(url)
        port = None if scheme.endswith("+cluster") else parts.port
    except ValueError as exc:
        raise ConfigurationError(f"malformed {scheme}:// URL: {exc}") from None
    if parts.fragment:
        raise ConfigurationError(f"a {scheme}:// URL takes no #fragment")
    query = _query(parts.query, scheme)
    raw = _BUILDERS.get(backend, _registered)(scheme, parts, port, query)
    options = _validate(backend, scheme, raw)
    return StoreURL(backend, scheme, options, _redact(url, parts))


def register_scheme(
    scheme: str, backend: str, options: type[BackendOptions] = MemoryOptions
) -> None:
    """Parse ``scheme://`` URLs for ``backend``, checking their options with ``options``.
    The built-in backends and their schemes cannot be taken over."""
    scheme = scheme.lower()
    if backend in _BUILDERS or scheme in _BUILTIN_SCHEMES:
        raise ConfigurationError(
            f"{scheme}:// or {backend!r} is built in; a registered backend takes new names"
        )
    _SCHEMES[scheme] = backend
    _MODELS[backend] = options


def _accepted() -> str:
    added = [f"{scheme}://" for scheme in _SCHEMES if scheme not in _BUILTIN_SCHEMES]
    return ", ".join([_ACCEPTED, *added])


def _describe(url: object) -> str:
    return repr(url) if isinstance(url, str) and len(url) < 80 else f"a {type(url).__name__}"


def unquote(text: str) -> str:
    """A part of a URL, %-decoded: refused unless it is valid UTF-8 without NUL (which no
    driver, file system or server takes), never silently replaced."""
    try:
        decoded = _unquote_lossy(text, errors="strict")
    except UnicodeDecodeError:
        raise ConfigurationError("a storage URL's %-escapes must be valid UTF-8") from None
    if "\x00" in decoded or not _encodable(decoded):
        raise ConfigurationError("a storage URL cannot hold a NUL character or a lone surrogate")
    return decoded


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _query(query: str, scheme: str) -> dict[str, str]:
    if not _encodable(query) or "\x00" in query:
        raise ConfigurationError("a storage URL cannot hold a NUL character or a lone surrogate")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise ConfigurationError("a storage URL's %-escapes must be valid UTF-8") from None
    if any("\x00" in name or "\x00" in value for name, value in pairs):
        raise ConfigurationError("a storage URL cannot hold a NUL character")
    names = [name for name, _ in pairs]
    repeated = {name for name in names if names.count(name) > 1}
    if repeated:
        raise ConfigurationError(
            f"option {sorted(repeated)[0]!r} is given twice in the {scheme}:// URL"
        )
    return dict(pairs)


def _memory(scheme: str, parts: Any, port: int | None, query: dict[str, str]) -> dict[str, Any]:
    if parts.netloc or parts.path not in ("", "/"):
        raise ConfigurationError("a memory:// URL has no host or path: use memory://")
    return dict(query)


def _sqlite(scheme: str, parts: Any, port: int | None, query: dict[str, str]) -> dict[str, Any]:
    if parts.netloc:
        raise ConfigurationError(
            "a sqlite URL has no host: use sqlite:///relative.db or sqlite:////absolute/path.db"
        )
    path = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not path or path.endswith("/"):
        raise ConfigurationError(
            "a sqlite URL needs a file path: sqlite:///relative.db or sqlite:////absolute/path.db"
        )
    if path == ":memory:" or path.startswith("file:"):
        raise ConfigurationError(
            "an in-memory SQLite database cannot be shared by the store's threads; "
            "use memory:// for a store that lives in this process"
        )
    if "path" in query:
        raise ConfigurationError("the sqlite file path goes in the URL's path, not ?path=")
    return {"path": path, **query}


def _redis(scheme: str, parts: Any, port: int | None, query: dict[str, str]) -> dict[str, Any]:
    raw: dict[str, Any] = dict(query)
    for reserved in ("host", "port", "username", "password", "unix_socket_path", "ssl", "cluster",
                     "nodes"):  # fmt: skip
        if reserved in raw:
            raise ConfigurationError(
                f"{reserved} belongs in the URL itself, not in ?{reserved}= of a {scheme}:// URL"
            )
    if parts.username:
        raw["username"] = unquote(parts.username)
    if parts.password:
        raw["password"] = unquote(parts.password)
    if scheme in ("redis+unix", "unix"):
        if not parts.path:
            raise ConfigurationError(
                "a redis+unix URL needs a socket path: redis+unix:///path.sock"
            )
        raw["unix_socket_path"] = unquote(parts.path)
        return raw
    if scheme.endswith("+cluster"):
        return {**raw, **_cluster_nodes(scheme, parts)}
    if parts.hostname:
        raw["host"] = parts.hostname
    if port is not None:
        raw["port"] = port
    db = parts.path.strip("/")
    if db:
        if "db" in raw:
            raise ConfigurationError(f"the database is given twice in the {scheme}:// URL")
        raw["db"] = db
    raw["ssl"] = scheme == "rediss"
    return raw


def _cluster_nodes(scheme: str, parts: Any) -> dict[str, Any]:
    """``host:port,host:port`` of a cluster URL: its startup nodes (the first is host/port)."""
    if parts.path.strip("/"):
        raise ConfigurationError(f"a {scheme}:// URL has no database: Redis Cluster has only db 0")
    nodes: list[tuple[str, int]] = []
    for item in parts.netloc.rpartition("@")[2].split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep:
            host, port = port, "6379"
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(
                f"a {scheme}:// URL lists its nodes as host:port,host:port; {item!r} is not one"
            )
        nodes.append((host, int(port)))
    return {"cluster": True, "nodes": tuple(nodes), "host": nodes[0][0], "port": nodes[0][1],
            "ssl": scheme.startswith("rediss")}  # fmt: skip


def _registered(scheme: str, parts: Any, port: int | None, query: dict[str, str]) -> dict[str, Any]:
    # A registered backend's URL: whatever of the URL's parts it has, then its options.
    found = {
        "host": parts.hostname,
        "port": port,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "path": unquote(parts.path.lstrip("/")) or None,
    }
    for reserved in found:
        if reserved in query:
            raise ConfigurationError(
                f"{reserved} belongs in the URL itself, not in ?{reserved}= of a {scheme}:// URL"
            )
    return {**{name: value for name, value in found.items() if value is not None}, **query}


def _postgres(scheme: str, parts: Any, port: int | None, query: dict[str, str]) -> dict[str, Any]:
    raw: dict[str, Any] = dict(query)
    for reserved in ("host", "port", "user", "password", "dbname"):
        if reserved in raw:
            raise ConfigurationError(
                f"{reserved} belongs in the URL itself, not in ?{reserved}= of a {scheme}:// URL"
            )
    if parts.hostname:
        raw["host"] = parts.hostname
    if port is not None:
        raw["port"] = port
    if parts.username:
        raw["user"] = unquote(parts.username)
    if parts.password:
        raw["password"] = unquote(parts.password)
    dbname = unquote(parts.path.lstrip("/"))
    if dbname:
        raw["dbname"] = dbname
    return raw


_BUILDERS = {
    "memory": _memory,
    "sqlite": _sqlite,
    "redis": _redis,
    "postgresql": _postgres,
}
_BUILTIN_SCHEMES = frozenset(_SCHEMES)
_MODELS: dict[str, type[_Options]] = {
    "memory": MemoryOptions,
    "sqlite": SqliteOptions,
    "redis": RedisOptions,
    "postgresql": PostgresOptions,
}
_HIDDEN = {"host", "port", "db", "username", "password", "unix_socket_path", "ssl", "path"}
_HIDDEN |= {"cluster", "nodes"}
_HIDDEN |= {"user", "dbname"}


def _validate(backend: str, scheme: str, raw: dict[str, Any]) -> StoreOptions:
    model = _MODELS[backend]
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigurationError(_explain(model, scheme, exc)) from None


def _explain(model: type[_Options], scheme: str, exc: ValidationError) -> str:
    error = exc.errors()[0]
    name = str(error["loc"][0]) if error["loc"] else "?"
    if error["type"] == "extra_forbidden":
        return f"unknown option {name!r} for a {scheme}:// URL; accepted: {accepted_options(model)}"
    value = error.get("input")
    shown = "***" if name == "password" else repr(value)
    return f"option {name}={shown} in the {scheme}:// URL is invalid: {error['msg'].lower()}"


def accepted_options(model: type[_Options]) -> str:
    names = [field.alias or name for name, field in model.model_fields.items()]
    return ", ".join(sorted(name for name in names if name not in _HIDDEN))


def _redact(url: str, parts: Any) -> str:
    if parts.password is None:
        return url
    user = quote(unquote(parts.username or ""), safe="")
    host = parts.netloc.rsplit("@", 1)[1]
    return url.replace(parts.netloc, f"{user}:***@{host}", 1)
