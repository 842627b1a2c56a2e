"""What a rate-limit decision costs besides time: Redis commands per decision, bytes per key,
and whether a limit holds when 4 processes share it.

- Commands: a private ``redis-server`` (started here on a free loopback port, stopped after)
  so that no other client's commands are counted; ``MONITOR`` tells the commands the client
  sent (round trips) from those a Lua script ran inside Redis, ``INFO commandstats`` deltas
  count the EVALSHA calls.
- Bytes per key: Redis ``MEMORY USAGE <key> SAMPLES 0`` summed over every key a contender
  made, per rate-limit key; in memory, the RSS growth of a fresh subprocess per key.
- Exactness: 4 OS processes each try 100 decisions on one key limited to 50 an hour.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio

from .limits import BOUNDED, Commands, Exactness, Footprint, open_redis_contenders
from .machine import SERVER_CPU

FOOTPRINT_POLICY = "100/hour"  # nothing expires while it is measured
FOOTPRINT_HITS = (1, 100)  # decisions per key: one, and a full window
EXACT_POLICY, EXACT_LIMIT = "50/hour", 50
PROCESSES, ATTEMPTS = 4, 100  # per process
_MONITOR = re.compile(r'^\S+ \[\d+ ([^\]]+)\] "([^"]+)"(?: "([^"]*)")?')


# commands per decision


KEYS = 100  # counted decisions go to 100 fresh keys, several each


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def count_commands(*, decisions: int) -> tuple[list[Commands], str]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not server or not cli:
        return [], "Not measured: a private redis-server (and redis-cli) is needed for it."
    import redis.asyncio as aioredis

    port = _free_port()
    command = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if (os.cpu_count() or 1) > 1:  # where the other servers are (machine.pinned)
        with contextlib.suppress(OSError):
            os.sched_setaffinity(proc.pid, {SERVER_CPU})
    url = f"redis://127.0.0.1:{port}/0"
    control = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        await _wait_ping(control)
        version = (await control.info("server"))["redis_version"]
        async with AsyncExitStack() as stack:
            contenders = await open_redis_contenders(f"{url}?key_prefix=swbench", stack)
            del contenders[BOUNDED]  # the same commands as through redis-py's defaults
            for c in contenders.values():  # connections made and scripts loaded first
                for n in range(20):
                    await c.decide(f"warm{n}")
            evalsha: dict[str, tuple[float, float]] = {}
            for name, c in contenders.items():  # first with no MONITOR, which slows Redis
                calls, usec = await _evalsha_stats(control)
                for i in range(decisions):
                    await c.decide(f"a{i % KEYS}")
                calls_after, usec_after = await _evalsha_stats(control)
                done = max(calls_after - calls, 1)
                evalsha[name] = (done / decisions, (usec_after - usec) / done)
            with tempfile.TemporaryDirectory() as tmp:
                log = Path(tmp) / "monitor.log"
                with log.open("w") as sink:
                    monitor = subprocess.Popen([cli, "-p", str(port), "monitor"], stdout=sink)
                    try:
                        await _wait_for(log, "OK")
                        for name, c in contenders.items():
                            await control.echo(f"begin {name}")
                            for i in range(decisions):
                                await c.decide(f"b{i % KEYS}")
                            await control.echo(f"end {name}")
                        await _wait_for(log, f"end {name}")
                    finally:
                        monitor.terminate()
                        monitor.wait(10)
                found = _parse_monitor(log.read_text(), list(contenders), decisions, evalsha)
    finally:
        await control.aclose()
        proc.terminate()
        proc.wait(10)
    note = (f"Counted on a private redis-server {version} (on CPU {SERVER_CPU}), {decisions:,} "
            f"decisions each, one task, over {KEYS} keys, {decisions // KEYS} a key.")  # fmt: skip
    return found, note


async def _wait_ping(client: Any) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            await client.ping()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await anyio.sleep(0.05)


async def _wait_for(log: Path, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in log.read_text():
        if time.monotonic() > deadline:
            raise RuntimeError(f"MONITOR never showed {text!r}")
        await anyio.sleep(0.05)


async def _evalsha_stats(client: Any) -> tuple[int, int]:
    """EVALSHA calls so far, and the microseconds Redis spent running them."""
    stats = (await client.info("commandstats")).get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def _parse_monitor(
    text: str, names: list[str], decisions: int, evalsha: dict[str, tuple[float, float]]
) -> list[Commands]:
    sent: dict[str, Counter[str]] = {name: Counter() for name in names}
    inside: dict[str, Counter[str]] = {name: Counter() for name in names}
    current = None
    for line in text.splitlines():
        found = _MONITOR.match(line)
        if not found:
            continue
        source, command, first = found[1], found[2].upper(), found[3]
        if command == "ECHO" and first:
            what, _, name = first.partition(" ")
            current = name if what == "begin" and name in sent else None
            continue
        if current is not None:
            (inside if source == "lua" else sent)[current][command] += 1
    per = 1 / decisions
    return [
        Commands(
            name,
            decisions,
            sum(sent[name].values()) * per,
            _spell(sent[name], per),
            evalsha[name][0],
            evalsha[name][1],
            sum(inside[name].values()) * per,
            _spell(inside[name], per),
        )
        for name in names
    ]


def _spell(counts: Counter[str], per: float) -> str:
    return ", ".join(f"{c} {n * per:.2g}" for c, n in counts.most_common()) or "-"


# bytes per key


async def redis_footprint(url: str, *, keys: int) -> list[Footprint]:
    import redis.asyncio as aioredis

    base = url.split("?")[0]
    client = aioredis.Redis.from_url(base)
    out = []
    try:
        for hits in FOOTPRINT_HITS:
            prefix = f"swbench:b{hits:03d}"  # key names of one length: MEMORY USAGE counts them
            async with AsyncExitStack() as stack:
                contenders = await open_redis_contenders(
                    f"{base}?key_prefix={prefix}", stack, policy=FOOTPRINT_POLICY
                )
                for name, c in contenders.items():
                    if "coredis" in name or name == BOUNDED:  # the same keys as redis-py's
                        continue
                    for k in range(keys):
                        for _ in range(hits):
                            await c.decide(f"user{k}")
                    found = [key async for key in client.scan_iter(match=c.pattern, count=1000)]
                    total = 0
                    for key in found:
                        total += await client.memory_usage(key, samples=0) or 0
                    example = min(found, key=len).decode()
                    how = (f"MEMORY USAGE, {len(found) / keys:g} key(s) each, "
                           f"e.g. `{example}`")  # fmt: skip
                    name = name.replace(" (redis-py)", "")
                    out.append(Footprint("redis", name, hits, total / keys, how))
                    for key in found:
                        await client.delete(key)
    finally:
        await client.aclose()
    return out


MEMORY_KINDS = ("sessionward", "limits moving window", "limits fixed window",
                "limits sliding window counter")  # fmt: skip


async def memory_footprint(*, keys: int) -> list[Footprint]:
    out = []
    for kind in MEMORY_KINDS:
        for hits in FOOTPRINT_HITS:
            per_key = await anyio.to_thread.run_sync(_in_subprocess, _footprint_child,
                                                     (kind, keys, hits))  # fmt: skip
            how = f"RSS growth of a fresh process over {keys:,} keys"
            out.append(Footprint("memory", kind, hits, per_key, how))
    return out


def _in_subprocess(target: Any, args: tuple[Any, ...]) -> Any:
    ctx = multiprocessing.get_context("spawn")
    answers = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, answers))
    proc.start()
    try:
        return answers.get(timeout=600)
    finally:
        proc.join(60)


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _footprint_child(kind: str, keys: int, hits: int, answers: Any) -> None:
    if kind == "sessionward":
        answers.put(anyio.run(_sessionward_footprint, keys, hits))
        return
    from limits.storage import MemoryStorage
    from limits.strategies import (
        FixedWindowRateLimiter,
        MovingWindowRateLimiter,
        SlidingWindowCounterRateLimiter,
    )

    from limits import parse

    strategy = {
        "limits moving window": MovingWindowRateLimiter,
        "limits fixed window": FixedWindowRateLimiter,
        "limits sliding window counter": SlidingWindowCounterRateLimiter,
    }[kind]
    limiter, item = strategy(MemoryStorage()), parse(FOOTPRINT_POLICY)
    names = [f"user{k}" for k in range(keys)]
    for k in range(1000):  # code paths warm, allocator pools in use
        for _ in range(hits):
            limiter.hit(item, f"warm{k}")
    gc.collect()
    before = _rss()
    for name in names:
        for _ in range(hits):
            limiter.hit(item, name)
    gc.collect()
    answers.put((_rss() - before) / keys)


async def _sessionward_footprint(keys: int, hits: int) -> float:
    from sessionward import open_ward
    from sessionward.limits import parse_policy

    policy = parse_policy(FOOTPRINT_POLICY)
    names = [f"user{k}" for k in range(keys)]
    async with open_ward("memory://?max_entries=1000000", sweep=False) as ward:
        for k in range(1000):
            for _ in range(hits):
                await ward.limits.hit(f"warm{k}", policy)
        gc.collect()
        before = _rss()
        for name in names:
            for _ in range(hits):
                await ward.limits.hit(name, policy)
        gc.collect()
        return (_rss() - before) / keys


# exactness across processes


async def exactness(urls: dict[str, str], backends: list[str], workdir: Path) -> list[Exactness]:
    cases = [
        ("limits moving window", "memory://", "limits", "memory://"),
        ("sessionward", "memory:// (one per process)", "sessionward", "memory://"),
    ]
    if "sqlite" in backends:
        sqlite = f"sqlite:///{workdir}/exact.db"
        from sessionward import open_ward

        async with open_ward(sqlite, sweep=False):  # the schema, before 4 processes race for it
            pass
        cases.append(("sessionward", "SQLite file", "sessionward", sqlite))
    if "redis" in backends:
        base = urls["redis"].split("?")[0]
        cases.append(("sessionward", "Redis", "sessionward", urls["redis"]))
        cases.append(("limits moving window", "Redis (redis-py)", "limits", base))
    out = []
    for name, store, kind, url in cases:
        key = f"exact-{os.getpid()}-{time.time_ns()}"
        allowed = await anyio.to_thread.run_sync(_race, kind, url, key)
        out.append(Exactness(name, store, PROCESSES, EXACT_LIMIT, PROCESSES * ATTEMPTS, allowed))
    return out


def _race(kind: str, url: str, key: str) -> int:
    ctx = multiprocessing.get_context("spawn")
    gate, answers = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=_exact_child, args=(kind, url, key, gate, answers))
             for _ in range(PROCESSES)]  # fmt: skip
    for proc in procs:
        proc.start()
    try:
        return sum(answers.get(timeout=300) for _ in procs)
    finally:
        for proc in procs:
            proc.join(60)


def _exact_child(kind: str, url: str, key: str, gate: Any, answers: Any) -> None:
    with contextlib.suppress(OSError):  # the parent is pinned to one CPU; race on all of them
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    if kind == "sessionward":
        answers.put(anyio.run(_sessionward_race, url, key, gate))
        return
    from limits.storage import storage_from_string
    from limits.strategies import MovingWindowRateLimiter

    from limits import parse

    storage = storage_from_string(url, key_prefix="swbench:exact") if url != "memory://" else None
    limiter = MovingWindowRateLimiter(storage or storage_from_string("memory://"))
    item = parse(EXACT_POLICY)
    gate.wait()
    answers.put(sum(bool(limiter.hit(item, key)) for _ in range(ATTEMPTS)))


async def _sessionward_race(url: str, key: str, gate: Any) -> int:
    from sessionward import open_ward
    from sessionward.limits import parse_policy

    policy = parse_policy(EXACT_POLICY)
    async with open_ward(url, sweep=False) as ward:
        await anyio.to_thread.run_sync(gate.wait)
        allowed = 0
        for _ in range(ATTEMPTS):
            allowed += (await ward.limits.hit(key, policy)).allowed
        return allowed
