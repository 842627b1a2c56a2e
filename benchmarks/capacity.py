"""What the capacity monitor costs: CPU seconds per sample (every thread of the process,
store reads included) with many active sessions, as a share of one core at the default
5 s interval, and the request path's only cost, one ``Activity.request`` call.

python -m benchmarks.capacity [--sessions 1000] [--samples 50] [--backends sqlite,redis,postgresql]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import timeit

import anyio

from sessionward import Settings, open_ward
from sessionward.capacity import Activity

REDIS_URL = os.environ.get("SESSIONWARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "SESSIONWARD_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
INTERVAL = 5.0


async def per_sample(url: str, sessions: int, samples: int) -> float:
    """CPU seconds one sample takes, on average."""
    async with open_ward(url, settings=Settings(), sweep=False) as ward:
        for n in range(sessions):
            await ward.sessions.create(f"user-{n % (sessions // 2 or 1)}")
        await ward.capacity.sample()  # the probe's first reading starts its counts
        started = time.process_time()
        for _ in range(samples):
            await ward.capacity.sample()
        return (time.process_time() - started) / samples


def request_cost() -> float:
    activity = Activity(60.0)
    return min(timeit.repeat(lambda: activity.request(0.001), number=100_000, repeat=5)) / 1e5


def _drop(backend: str, tag: str) -> None:
    """Remove this run's keys or schema from the shared server."""
    if backend == "redis":
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{tag}:*", count=1000):
            client.delete(key)
        client.close()
    elif backend == "postgresql":
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{tag}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--backends", default="sqlite,redis,postgresql")
    args = parser.parse_args()
    tag = f"swbenchcap{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        urls = {
            "sqlite": f"sqlite:///{tmp}/bench.db",
            "redis": f"{REDIS_URL}?key_prefix={tag}",
            "postgresql": f"{POSTGRES_URL}?schema={tag}",
        }
        for backend in args.backends.split(","):
            try:
                seconds = anyio.run(per_sample, urls[backend], args.sessions, args.samples)
            finally:
                _drop(backend, tag)
            share = 100 * seconds / INTERVAL
            print(f"{backend}: {seconds * 1000:.2f} ms CPU per sample with {args.sessions} "
                  f"active sessions = {share:.3f}% of a core at {INTERVAL:g} s")  # fmt: skip
    print(f"request path: {request_cost() * 1e9:.0f} ns per request (Activity.request)")


if __name__ == "__main__":
    main()
