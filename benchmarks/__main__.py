"""Run the benchmarks and write docs/benchmarks.md.

python -m benchmarks [--quick] [--backends memory,sqlite,redis,postgresql]
                     [--sections sessions,auth,budget,ratelimit,jobs,http]
                     [--output docs/benchmarks.md]

Run with ``--sections http`` alone, the HTTP block of the existing output is replaced and the
rest kept; a full run keeps the idle-WebSocket block (``python -m benchmarks.ws_idle``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import anyio

from . import http_report, report
from .auth import bench_auth, bench_login
from .budgets import bench_budget
from .http_load import HttpResults, bench_http
from .http_load import clean as clean_http
from .jobs import JobResults, bench_jobs
from .limits import RateLimitResults, bench_ratelimit
from .machine import describe, pinned
from .measure import Result
from .sessions import bench_sessions, raw_sqlite

REDIS_URL = os.environ.get("SESSIONWARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "SESSIONWARD_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


Results = dict[str, dict[str, list[Result]]]


async def run(
    backends: list[str], sections: list[str], per_task: int, quick: bool
) -> tuple[Results, RateLimitResults | None, dict[str, JobResults]]:
    results: Results = {"sessions": {}, "auth": {}, "budget": {}}
    rate: RateLimitResults | None = None
    jobs: dict[str, JobResults] = {}
    with tempfile.TemporaryDirectory() as tmp:
        urls = {
            "memory": "memory://?max_entries=1000000",
            "sqlite": f"sqlite:///{tmp}/bench.db",
            "redis": f"{REDIS_URL}?key_prefix=swbench",
            "postgresql": f"{POSTGRES_URL}?schema=swbench&pool_min=10&pool_max=10",
        }
        for backend in backends:
            if "sessions" in sections:
                print(f"sessions on {backend} ...", flush=True)
                raw = raw_sqlite(Path(tmp), ops=per_task) if backend == "sqlite" else []
                found = raw + await bench_sessions(urls[backend], per_task=per_task)
                results["sessions"][backend] = found
            if "auth" in sections and backend != "memory":
                print(f"auth on {backend} ...", flush=True)
                await _clean([backend])
                found = await bench_auth(urls[backend], Path(tmp), per_task=per_task // 2)
                await _clean([backend])
                found.append(await bench_login(urls[backend], Path(tmp), logins=20))
                results["auth"][backend] = found
            if "budget" in sections:
                print(f"budget on {backend} ...", flush=True)
                await _clean([backend])
                results["budget"][backend] = await bench_budget(urls[backend], per_task=per_task)
            if "jobs" in sections:
                print(f"jobs on {backend} ...", flush=True)
                await _clean([backend])
                jobs[backend] = await bench_jobs(urls[backend], backend, jobs=per_task // 2,
                                                 samples=200 if quick else 500)  # fmt: skip
            await _clean([backend])
        if "ratelimit" in sections:
            print("rate limiting ...", flush=True)
            used = [backend for backend in backends if backend == "redis"]
            await _clean(used)
            try:
                rate = await bench_ratelimit(
                    urls, backends, Path(tmp), per_task=per_task, quick=quick
                )
            finally:
                await _clean(used)
    return results, rate, jobs


async def _clean(backends: list[str]) -> None:
    if "redis" in backends:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(REDIS_URL)
        async for key in client.scan_iter(match="swbench:*", count=1000):
            await client.delete(key)
        await client.aclose()
    if "postgresql" in backends:
        import psycopg

        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
            await conn.execute("DROP SCHEMA IF EXISTS swbench CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer operations (a smoke run)")
    parser.add_argument("--backends", default="memory,sqlite,redis,postgresql")
    parser.add_argument("--sections", default="sessions,auth,budget,ratelimit,jobs,http")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    per_task = 500 if args.quick else 5000
    backends, sections = args.backends.split(","), args.sections.split(",")
    with pinned() as pinning:
        results, rate, jobs = anyio.run(run, backends, sections, per_task, args.quick)
        http = run_http(backends, args.quick) if "http" in sections else None
    old = args.output.read_text() if args.output.exists() else ""
    if sections == ["http"] and old:
        text = old
    else:
        text = report.render(describe(), pinning, results, rate, jobs)
        for name in ("http", "ws"):
            kept = http_report.carried(old, name)
            if kept:
                text = http_report.splice(text, name, kept)
    if http is not None:
        busy = f"Taken {describe()}; load average then {_load()} (other work on the machine)."
        text = http_report.splice(text, "http", http_report.block("http", http_report.http_lines(
            http, busy)))  # fmt: skip
    args.output.write_text(text)
    print(text)


def run_http(backends: list[str], quick: bool) -> HttpResults:
    used = [b for b in backends if b != "memory"]
    with tempfile.TemporaryDirectory() as tmp:
        urls = {
            "sqlite": f"sqlite:///{tmp}/http.db",
            "redis": f"{REDIS_URL}?key_prefix=swbench-http-sw",
            "postgresql": f"{POSTGRES_URL}?schema=swbench_http_sw",
        }
        clean_http(REDIS_URL, POSTGRES_URL, used)
        try:
            return bench_http(urls, used, Path(tmp), quick=quick, redis_url=REDIS_URL,
                              postgres_url=POSTGRES_URL)  # fmt: skip
        finally:
            clean_http(REDIS_URL, POSTGRES_URL, used)


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} vCPUs"


if __name__ == "__main__":  # not again in the processes the rate-limit benchmark spawns
    main()
