"""HTTP under load: wrk with many keep-alive connections against the service and baselines.

Every server is one uvicorn worker (uvloop + httptools) pinned to CPU 1; wrk runs on CPU 0
with ``benchmarks/wrk_count.lua``, which sets the Bearer header (or the session cookie) and
counts non-2xx responses: any non-2xx fails the section. Rate limits are set high so that
nothing is refused. Round trips to the store per request are counted through a loopback
proxy that counts request/reply turns per connection (``TurnProxy``), with an idle window of
the same length subtracted (the worker's and the sweeper's background queries).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from .machine import CLIENT_CPU, SERVER_CPU

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().parent / "wrk_count.lua"
WRK = os.environ.get("SESSIONWARD_BENCH_WRK", "/usr/bin/wrk")
SECRET = "bench-secret-" + "h" * 40
PASSWORD = "correct horse battery"
ROOMY = {
    "SESSIONWARD_API_RATE_LIMIT": "10000000/second",
    "SESSIONWARD_IP_RATE_LIMIT": "10000000/second",
    "SESSIONWARD_LOGIN_IP_MAX_FAILURES": "1000000",
    "SESSIONWARD_LOG_LEVEL": "warning",
    "SESSIONWARD_BUDGET_DEFAULT": str(2**50),  # charges of 1 never run out
}
SW_ENDPOINTS = (("health", "/v1/health"), ("me", "/v1/me"),
                ("state read", "/v1/state/user/doc"), ("budget", "/v1/budget"))  # fmt: skip
# (name, method, path, body); a %d in the body is a per-request counter (wrk_count.lua)
SW_WRITES = (("state write", "PUT", "/v1/state/user/doc", '{"data": {"theme": "dark"}}'),
             ("charge", "POST", "/v1/budget/charges",
              '{"amount": 1, "idempotency_key": "{salt}-%d"}'))  # fmt: skip


@dataclass(frozen=True)
class Load:
    """One wrk run."""

    name: str
    backend: str
    kind: str  # bare, raw, star, or a SW_ENDPOINTS name
    requests: int
    seconds: float
    non2xx: int
    errors: int
    p50_us: float
    p99_us: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


@dataclass(frozen=True)
class Trips:
    """Store round trips per request of one endpoint, background subtracted."""

    backend: str
    kind: str
    per_request: float
    commands: str = ""  # Redis: the commands sent, per request


@dataclass
class HttpResults:
    wrk: str
    loads: list[Load] = field(default_factory=list)
    trips: list[Trips] = field(default_factory=list)
    profile: list[str] = field(default_factory=list)
    profile_us: dict[str, float] = field(default_factory=dict)  # own µs/request by part
    cpu_us: dict[str, float] = field(default_factory=dict)  # server CPU per request
    notes: list[str] = field(default_factory=list)

    def find(self, backend: str, kind: str) -> Load | None:
        return next((x for x in self.loads if x.backend == backend and x.kind == kind), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(20)


def launch(command: list[str], ready: str, workdir: Path, **env: str) -> Server:
    """``command`` pinned to the server CPU; waits (60 s at most) until ``ready`` answers 2xx."""
    port = free_port()
    log = workdir / f"server-{port}.log"
    environment = {**os.environ, **env, "SESSIONWARD_PORT": str(port)}
    args = [a.replace("{port}", str(port)) for a in command]
    with open(log, "wb") as out:
        proc = subprocess.Popen(["taskset", "-c", str(SERVER_CPU), *args], cwd=workdir,
                                env=environment, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(server.url + ready, timeout=1).is_success:
                return server
        time.sleep(0.05)  # polling a subprocess's port, bounded by the deadline
    server.stop()
    raise RuntimeError(f"{args} did not start: {log.read_text()[-2000:]}")


def uvicorn_app(factory: str, workdir: Path, ready: str, **env: str) -> Server:
    command = [sys.executable, "-m", "uvicorn", "--factory", f"benchmarks.http_apps:{factory}",
               "--port", "{port}", "--loop", "uvloop", "--http", "httptools",
               "--no-access-log", "--log-level", "warning", "--app-dir", str(ROOT)]  # fmt: skip
    return launch(command, ready, workdir, PYTHONPATH=_pythonpath(), **env)


def sessionward_serve(store: str, workdir: Path) -> Server:
    """``sessionward serve`` (uvicorn, one worker; uvloop and httptools as installed)."""
    env = {**ROOMY, "SESSIONWARD_STORE": store, "SESSIONWARD_SECRET_KEY": SECRET}
    command = [sys.executable, "-m", "sessionward", "serve", "--workers", "1"]
    return launch(command, "/v1/ready", workdir, PYTHONPATH=_pythonpath(), **env)


def _pythonpath() -> str:
    return os.pathsep.join(p for p in [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH")]
                           if p)  # fmt: skip


def wrk(url: str, *, connections: int, seconds: float, auth: str = "", cookie: str = "",
        method: str = "", body: str = "") -> dict[str, int]:  # fmt: skip
    body = body.replace("{salt}", os.urandom(6).hex())  # a new key space for every run
    env = {**os.environ, "WRK_AUTHORIZATION": auth, "WRK_COOKIE": cookie, "WRK_METHOD": method,
           "WRK_BODY": body}  # fmt: skip
    command = ["taskset", "-c", str(CLIENT_CPU), WRK, "-t1", f"-c{connections}",
               f"-d{max(1, round(seconds))}s", "--timeout", "5s", "-s", str(LUA), url]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60,
                          check=True)  # fmt: skip
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRKJSON "))
    return dict(json.loads(line.removeprefix("WRKJSON ")))


def measure(name: str, backend: str, kind: str, url: str, *, connections: int, seconds: float,
            **request: str) -> Load:  # fmt: skip
    wrk(url, connections=connections, seconds=min(1.0, seconds), **request)
    got = wrk(url, connections=connections, seconds=seconds, **request)
    return Load(name, backend, kind, got["requests"], got["duration_us"] / 1e6, got["non2xx"],
                got["errors"], got["p50_us"], got["p99_us"])  # fmt: skip


# the store round trips per request


def every_request() -> Iterator[tuple[str, str, str, Callable[[int], str | None]]]:
    """(kind, method, path, the body of request i) for each endpoint of the service."""
    for kind, path in SW_ENDPOINTS:
        yield kind, "GET", path, lambda i: None
    salt = os.urandom(6).hex()
    for kind, method, path, body in SW_WRITES:
        template = body.replace("{salt}", salt)
        yield kind, method, path, lambda i, t=template: t.replace("%d", str(i))  # type: ignore[misc]


class TurnProxy:
    """A loopback TCP proxy counting turns: a client write that follows a reply (or opens
    the connection) is one round trip, however many packets or pipelined commands it holds.
    For Redis it also counts the command names sent."""

    def __init__(self, host: str, port: int, *, resp: bool = False) -> None:
        self.target = (host, port)
        self.turns = 0
        self.commands: Counter[str] = Counter()
        self._resp = resp
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TurnProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        state = {"replied": True}

        async def upward() -> None:
            while data := await reader.read(65536):
                if state["replied"]:
                    self.turns += 1
                    state["replied"] = False
                if self._resp:
                    self.commands.update(m.decode().upper() for m in _RESP_COMMAND.findall(data))
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def downward() -> None:
            while data := await up_reader.read(65536):
                state["replied"] = True
                writer.write(data)
                await writer.drain()
            writer.close()

        with contextlib.suppress(OSError):
            await asyncio.gather(upward(), downward())


_RESP_COMMAND = re.compile(rb"\*\d+\r\n\$\d+\r\n([A-Za-z]+)\r\n")


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host).geturl()


def count_trips(store: str, backend: str, workdir: Path, *, requests: int) -> list[Trips]:
    parts = urlsplit(store)
    proxy = TurnProxy(parts.hostname or "127.0.0.1", parts.port or 0, resp=backend == "redis")
    out: list[Trips] = []
    with proxy:
        server = sessionward_serve(_via(store, proxy.port), workdir)
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                headers = sign_in(client, f"trips{backend}")
                for kind, method, path, body in every_request():
                    send = {"headers": {**headers, "Content-Type": "application/json"}}
                    client.request(method, path, content=body(-1), **send).raise_for_status()
                    turns, names = proxy.turns, proxy.commands.copy()
                    began = time.monotonic()
                    for i in range(requests):
                        client.request(method, path, content=body(i), **send).raise_for_status()
                    took = time.monotonic() - began
                    busy, sent = proxy.turns - turns, proxy.commands - names
                    turns, names = proxy.turns, proxy.commands.copy()
                    time.sleep(took)  # the same window idle: the background's share
                    idle, quiet = proxy.turns - turns, proxy.commands - names
                    per = max(busy - idle, 0) / requests
                    shown = ", ".join(f"{n / requests:.2f} {c}" for c, n in
                                      (sent - quiet).most_common())  # fmt: skip
                    out.append(Trips(backend, kind, per, shown))
        finally:
            server.stop()
    return out


async def count_sqlite_calls(store: str, *, requests: int) -> list[Trips]:
    """SQLite has no wire: the service runs in this process (httpx's ASGI transport) and
    the store's own counter of calls handed to its connection threads is read."""
    from sessionward import Settings
    from sessionward.service import create_app
    from sessionward.stores.sqlite import SqliteStore

    settings = Settings(store=store, secret_key=SECRET, api_rate_limit=ROOMY[
        "SESSIONWARD_API_RATE_LIMIT"], ip_rate_limit=ROOMY["SESSIONWARD_IP_RATE_LIMIT"],
        login_ip_max_failures=1_000_000)  # type: ignore[arg-type]  # fmt: skip
    app = create_app(settings)
    out: list[Trips] = []
    async with app.router.lifespan_context(app):
        counted = app.state.ward.store
        assert isinstance(counted, SqliteStore)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await client.post("/v1/auth/register", json={"username": "tripsql",
                                                         "password": PASSWORD})  # fmt: skip
            login = await client.post("/v1/auth/login", json={"username": "tripsql",
                                                              "password": PASSWORD})  # fmt: skip
            headers = {"Authorization": f"Bearer {login.raise_for_status().json()['access_token']}"}
            put = await client.put("/v1/state/user/doc", json={"data": {"theme": "dark"}},
                                   headers=headers)  # fmt: skip
            put.raise_for_status()
            send = {"headers": {**headers, "Content-Type": "application/json"}}
            for kind, method, path, body in every_request():
                (await client.request(method, path, content=body(-1), **send)).raise_for_status()
                calls, began = counted.calls, time.monotonic()
                for i in range(requests):
                    answer = await client.request(method, path, content=body(i), **send)
                    answer.raise_for_status()
                took, busy = time.monotonic() - began, counted.calls - calls
                calls = counted.calls
                await asyncio.sleep(took)  # the same window idle: the background's share
                idle = counted.calls - calls
                out.append(Trips("sqlite", kind, max(busy - idle, 0) / requests,
                                 "calls to the connection threads"))  # fmt: skip
    return out


def sign_in(client: httpx.Client, username: str) -> dict[str, str]:
    """Register, log in, write the document the state read reads; the Bearer header."""
    client.post("/v1/auth/register", json={"username": username, "password": PASSWORD})
    login = client.post("/v1/auth/login", json={"username": username, "password": PASSWORD})
    login.raise_for_status()
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    put = client.put("/v1/state/user/doc", json={"data": {"theme": "dark", "n": 1}},
                     headers=headers)  # fmt: skip
    put.raise_for_status()
    return headers


# the run


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


def bench_http(urls: dict[str, str], backends: list[str], workdir: Path, *, quick: bool,
               redis_url: str, postgres_url: str, profile: bool = True) -> HttpResults:  # fmt: skip
    seconds, connections = (2.0, 50) if quick else (8.0, 50)
    results = HttpResults(wrk=f"wrk 4.1, -t1 -c{connections} -d{seconds:g}s, keep-alive")

    def load(name: str, backend: str, kind: str, url: str, **headers: str) -> None:
        results.loads.append(measure(name, backend, kind, url, connections=connections,
                                     seconds=seconds, **headers))  # fmt: skip

    print("http: bare FastAPI ...", flush=True)
    with running(uvicorn_app("bare", workdir, "/ok")) as s:
        load("bare FastAPI GET {ok: true}", "-", "bare", s.url + "/ok")
        results.cpu_us["bare"] = _cpu_per_request(s, s.url + "/ok", connections, seconds)
    env = {"SWBENCH_REDIS_URL": redis_url, "SWBENCH_POSTGRES_URL": postgres_url}
    if "redis" in backends:
        print("http: raw redis-py GET, starsessions ...", flush=True)
        _redis_session(redis_url)
        with running(uvicorn_app("raw_redis", workdir, "/docs", **env)) as s:
            load(
                "raw redis-py GET of a cookie's session",
                "redis",
                "raw",
                s.url + "/raw",
                cookie="sid=bench",
            )
        with running(uvicorn_app("star", workdir, "/docs", **env)) as s:
            login = httpx.get(s.url + "/star/login")
            cookie = f"session={login.cookies['session']}"
            load(
                "starsessions on Redis (reads, rewrites)",
                "redis",
                "star",
                s.url + "/star",
                cookie=cookie,
            )
    if "postgresql" in backends:
        print("http: raw psycopg SELECT ...", flush=True)
        _postgres_session(postgres_url)
        with running(uvicorn_app("raw_postgres", workdir, "/docs", **env)) as s:
            load(
                "raw psycopg SELECT of a cookie's session",
                "postgresql",
                "raw",
                s.url + "/raw",
                cookie="sid=bench",
            )
    for backend in backends:
        print(f"http: sessionward serve on {backend} ...", flush=True)
        with running(sessionward_serve(urls[backend], workdir)) as s:
            with httpx.Client(base_url=s.url, timeout=30) as client:
                headers = sign_in(client, f"bench{backend}")
            for kind, path in SW_ENDPOINTS:
                auth = "" if kind == "health" else headers["Authorization"]
                load(f"sessionward GET {path}", backend, kind, s.url + path, auth=auth)
            for kind, method, path, body in SW_WRITES:
                load(f"sessionward {method} {path}", backend, kind, s.url + path,
                     auth=headers["Authorization"], method=method, body=body)  # fmt: skip
            if backend == "redis":
                results.cpu_us["state read, redis"] = _cpu_per_request(
                    s,
                    s.url + "/v1/state/user/doc",
                    connections,
                    seconds,
                    auth=headers["Authorization"],
                )
                if profile:
                    print("http: py-spy on the Redis state read ...", flush=True)
                    results.profile, results.profile_us = profile_state_read(
                        s, headers["Authorization"], workdir, connections, seconds
                    )
    if "sqlite" in backends:
        print("http: store calls on sqlite ...", flush=True)
        results.trips += asyncio.run(count_sqlite_calls(urls["sqlite"].replace(
            ".db", "-calls.db"), requests=50 if quick else 200))  # fmt: skip
    for backend in backends:
        if backend in ("redis", "postgresql"):
            print(f"http: round trips on {backend} ...", flush=True)
            results.trips += count_trips(urls[backend], backend, workdir,
                                         requests=50 if quick else 200)  # fmt: skip
    bad = [x for x in results.loads if x.non2xx or x.errors]
    if bad:
        raise RuntimeError(f"non-2xx responses or socket errors: {bad}")
    return results


def _cpu_per_request(server: Server, url: str, connections: int, seconds: float,
                     auth: str = "") -> float:  # fmt: skip
    """The server's CPU time (user + system) per request under the same load, in µs."""
    import psutil

    proc = psutil.Process(server.proc.pid)
    before = proc.cpu_times()
    got = wrk(url, connections=connections, seconds=seconds, auth=auth)
    after = proc.cpu_times()
    cpu = (after.user - before.user) + (after.system - before.system)
    return cpu / max(got["requests"], 1) * 1e6


def _redis_session(url: str) -> None:
    import redis

    from .http_apps import PREFIX

    client = redis.Redis.from_url(url)
    client.set(PREFIX + "raw:bench", json.dumps({"user_id": "bench-user", "expires_at": 2e9}))
    client.close()


def _postgres_session(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS swbench_http")
        conn.execute("CREATE TABLE IF NOT EXISTS swbench_http.sessions "
                     "(id text PRIMARY KEY, data text NOT NULL)")  # fmt: skip
        conn.execute("INSERT INTO swbench_http.sessions VALUES ('bench', %s) "
                     "ON CONFLICT DO NOTHING",
                     (json.dumps({"user_id": "bench-user", "expires_at": 2e9}),))  # fmt: skip


def clean(redis_url: str, postgres_url: str, backends: list[str]) -> None:
    if "redis" in backends:
        import redis

        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match="swbench-http*", count=1000):
            client.delete(key)
        client.close()
    if "postgresql" in backends:
        import psycopg

        with psycopg.connect(postgres_url, autocommit=True) as conn:
            for schema in ("swbench_http", "swbench_http_sw"):
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


# the profile

_BUCKETS = (
    ("rate limit (web/limits.py, the limiter)", ("sessionward/web/limits.py",
                                                 "sessionward/limits/")),
    ("authentication (JWT check, session read)", ("sessionward/fastapi/deps.py",
                                                  "sessionward/auth/", "sessionward/sessions.py")),
    ("state read (state.py)", ("sessionward/state.py",)),
    ("store: sessionward's Redis layer", ("sessionward/stores/redis/",)),
    ("redis-py (commands, parsing, pool)", ("redis/",)),
    ("request metrics (service/metrics.py)", ("sessionward/service/metrics.py",)),
    ("body limit (service/body.py)", ("sessionward/service/body.py",)),
    ("FastAPI: dependencies, validation, serialisation", ("fastapi/",)),
    ("pydantic", ("pydantic",)),
    ("Starlette: routing, middleware stack", ("starlette/",)),
    ("uvicorn + httptools (HTTP protocol)", ("uvicorn/", "httptools")),
    ("asyncio / uvloop event loop", ("asyncio/", "uvloop")),
)  # fmt: skip


def profile_state_read(server: Server, auth: str, workdir: Path, connections: int,
                       seconds: float) -> tuple[list[str], dict[str, float]]:  # fmt: skip
    """py-spy over the server while wrk drives the Redis state read: the share of samples
    in which each part is on the stack (inclusive), and where they end (self)."""
    import psutil

    spy = Path(sys.executable).parent / "py-spy"
    out = workdir / "state-read.txt"
    proc = psutil.Process(server.proc.pid)
    record = subprocess.Popen([str(spy), "record", "--pid", str(server.proc.pid), "--rate", "200",
                               "--duration", f"{seconds + 1:g}", "--format", "raw", "--nonblocking",
                               "--output", str(out)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    before = proc.cpu_times()
    got = wrk(server.url + "/v1/state/user/doc", connections=connections, seconds=seconds,
              auth=auth)  # fmt: skip
    after = proc.cpu_times()
    record.wait(60)
    if not out.exists():
        return ["py-spy wrote no profile (it needs ptrace rights: run as root)."], {}
    cpu_us = ((after.user - before.user) + (after.system - before.system)) / got["requests"] * 1e6
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        parts = [_bucket(f) for f in stack.split(";")]
        inclusive.update({name: n for name in set(parts) if name})
        own[_innermost(parts)] += n
        leaf[_short(stack.split(";")[-1])] += n
    if not total:
        return ["py-spy took no samples."], {}
    lines = [f"{got['requests'] / got['duration_us'] * 1e6:,.0f} req/s while sampled; "
             f"server CPU {cpu_us:,.0f} µs per request; {total:,} samples.", "",
             "| part | own share | own µs/request | on the stack (inclusive) |",
             "|---|---:|---:|---:|"]  # fmt: skip
    for name in sorted(own, key=lambda b: -own[b]):
        share = own[name] / total
        lines.append(f"| {name} | {share * 100:.0f} % | {share * cpu_us:,.0f} | "
                     f"{inclusive[name] / total * 100:.0f} % |")  # fmt: skip
    lines += ["", "The functions the samples end in (self time), top 12:", "",
              "| function | self share | µs/request |", "|---|---:|---:|"]  # fmt: skip
    for name, n in leaf.most_common(12):
        lines.append(f"| `{name}` | {n / total * 100:.1f} % | {n / total * cpu_us:,.0f} |")
    return lines, {name: n / total * cpu_us for name, n in own.items()} | {"total": cpu_us}


def _short(frame: str) -> str:
    """``func (/long/path/site-packages/pkg/mod.py:12)`` -> ``func (pkg/mod.py)``."""
    func, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for cut in ("site-packages/", "/src/", "/lib/python3.11/"):
        if cut in path:
            path = path.split(cut, 1)[1]
            break
    return f"{func} ({path})"


_LOOP = "asyncio / uvloop event loop"


def _innermost(parts: list[str | None]) -> str:
    """The deepest part on the stack other than the event loop: the code a sample is in
    (the event loop only if nothing else is on the stack)."""
    named = [p for p in parts if p]
    inner = [p for p in named if p != _LOOP]
    return inner[-1] if inner else (named[-1] if named else "other (interpreter, C code)")


def _bucket(frame: str) -> str | None:
    # py-spy raw frames: "function (path/to/file.py:line)"; the first matching bucket wins
    for name, needles in _BUCKETS:
        if any(n in frame for n in needles):
            return name
    return None
