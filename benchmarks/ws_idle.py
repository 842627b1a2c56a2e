"""Idle authenticated WebSockets: the server's CPU while N of them are open and silent.

    python -m benchmarks.ws_idle [--sockets 1000] [--store sqlite] [--seconds 10]

One ``sessionward serve`` (one worker, pinned to CPU 1), N sockets of one user authenticated
with the subprotocol bearer, client pings off. The server's CPU (user + system) is sampled
with psutil over ``--seconds``; then the session is logged out and the time until the last
socket is closed (4401) is measured. The row goes into the ``ws`` block of
docs/benchmarks.md, replacing a row of the same store and N.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import tempfile
import time
from pathlib import Path

import httpx

from . import http_report
from .http_load import PASSWORD, Server, sessionward_serve
from .machine import CLIENT_CPU, describe

OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
REDIS_URL = os.environ.get("SESSIONWARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "SESSIONWARD_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
HEADER = [
    "## Idle WebSockets (issue 12)",
    "",
    "`python -m benchmarks.ws_idle --sockets N`: N authenticated `/v1/ws` sockets of one user,",
    "silent (client pings off), on one `sessionward serve` worker pinned to CPU 1; the",
    "server's CPU over the sampling window, then the time from a logout to the close of the",
    "last socket. Each row is its own run (the time and machine load are in it).",
    "",
    "| store | idle sockets | server CPU, % of a core | server RSS MB | logout to last close "
    "s | taken |",
    "|---|---:|---:|---:|---:|---|",
]


def raise_nofile(sockets: int) -> int:
    """The open-files limit, raised for this process and the server it starts."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = sockets * 2 + 1024
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


async def open_sockets(url: str, token: str, n: int, deadline: float) -> list[object]:
    """Up to ``n`` ready sockets, in batches of 100; stops at the first failed handshake or
    once ``deadline`` (monotonic) has passed, so a saturated server still gets measured."""
    from websockets.asyncio.client import connect

    async def one() -> object:
        ws = await connect(url, subprotocols=["sessionward", f"bearer.{token}"],  # type: ignore[list-item]
                           ping_interval=None, open_timeout=120, max_queue=4)  # fmt: skip
        ready = await asyncio.wait_for(ws.recv(), 60)
        if '"ready"' not in str(ready):
            raise RuntimeError(f"not ready: {ready!r}")
        return ws

    sockets: list[object] = []
    for start in range(0, n, 100):
        batch = await asyncio.gather(*(one() for _ in range(min(100, n - start))),
                                     return_exceptions=True)  # fmt: skip
        sockets += [ws for ws in batch if not isinstance(ws, BaseException)]
        if len(sockets) < start + len(batch) or time.monotonic() > deadline:
            break  # the server no longer keeps up: measure those open
        print(f"{len(sockets):,} sockets open", flush=True)
    return sockets


async def measure(
    server: Server, token: str, n: int, seconds: float, open_for: float
) -> tuple[int, float, float, float]:
    import psutil

    url = server.url.replace("http://", "ws://") + "/v1/ws"
    sockets = await open_sockets(url, token, n, time.monotonic() + open_for)
    opened = len(sockets)
    proc = psutil.Process(server.proc.pid)
    await asyncio.sleep(1.0)  # let the handshakes' work drain before the window
    before, began = proc.cpu_times(), time.monotonic()
    await asyncio.sleep(seconds)  # the measurement window itself
    after, took = proc.cpu_times(), time.monotonic() - began
    cpu = ((after.user - before.user) + (after.system - before.system)) / took * 100
    rss = proc.memory_info().rss / 2**20
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        revoked = time.monotonic()
        answer = await client.post("/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
        answer.raise_for_status()
        await asyncio.wait_for(asyncio.gather(*(ws.wait_closed() for ws in sockets)), 60)  # type: ignore[attr-defined]
        closed = time.monotonic() - revoked
    return opened, cpu, rss, closed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1000, help="1000; 10000 for the full size")
    parser.add_argument("--store", choices=("sqlite", "redis", "postgresql"), default="sqlite")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--open-for", type=float, default=180.0,
                        help="seconds to spend opening sockets at most")  # fmt: skip
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    raise_nofile(args.sockets)
    signal.signal(signal.SIGTERM, _exit)  # stopped from outside: still stop the server
    os.sched_setaffinity(0, {CLIENT_CPU})
    with tempfile.TemporaryDirectory() as tmp:
        store = {"sqlite": f"sqlite:///{tmp}/ws.db",
                 "redis": f"{REDIS_URL}?key_prefix=swbench-http-ws",
                 "postgresql": f"{POSTGRES_URL}?schema=swbench_http_ws"}[args.store]  # fmt: skip
        server = sessionward_serve(store, Path(tmp))
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                client.post("/v1/auth/register", json={"username": "wsbench", "password": PASSWORD})
                login = client.post("/v1/auth/login",
                                    json={"username": "wsbench", "password": PASSWORD})  # fmt: skip
                token = login.raise_for_status().json()["access_token"]
            opened, cpu, rss, closed = asyncio.run(
                measure(server, token, args.sockets, args.seconds, args.open_for)
            )
        finally:
            server.stop()
            _clean(args.store)
    one, five, _ = os.getloadavg()
    taken = f"{describe().split(';')[0]}, load {one:.1f}/{five:.1f}"
    shown = f"{opened:,}" + ("" if opened == args.sockets else
                             f" of {args.sockets:,} asked (opening slowed down)")  # fmt: skip
    row = (f"| {args.store} | {shown} | {cpu:.1f} | {rss:,.0f} | {closed:.2f} | "
           f"{taken} |")  # fmt: skip
    print(row)
    text = args.output.read_text() if args.output.exists() else ""
    rows = _rows(http_report.carried(text, "ws") or "")
    rows[(args.store, f"{args.sockets:,}")] = row
    ordered = sorted(rows.items(), key=lambda kv: (kv[0][0], _count(kv[0][1])))
    block = http_report.block("ws", [*HEADER, *(r for _, r in ordered)])
    args.output.write_text(http_report.splice(text, "ws", block))


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _count(cell: str) -> int:
    return int(cell.split()[-1].replace(",", "")) if " of " not in cell else int(
        cell.split(" of ")[1].split()[0].replace(",", ""))  # fmt: skip


def _rows(old_block: str) -> dict[tuple[str, str], str]:
    """The rows kept, by (store, sockets asked)."""
    rows = {}
    for line in old_block.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) >= 6 and cells[1][:1].isdigit():
            rows[(cells[0], f"{_count(cells[1]):,}")] = line
    return rows


def _clean(store: str) -> None:
    if store == "redis":
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match="swbench-http-ws*", count=1000):
            client.delete(key)
        client.close()
    elif store == "postgresql":
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS swbench_http_ws CASCADE")


if __name__ == "__main__":
    main()
