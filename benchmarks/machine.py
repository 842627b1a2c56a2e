"""Where the figures come from, and CPU pinning: client on CPU 0, servers on CPU 1.

On a 2-vCPU VM a cross-core round trip costs ~60 µs and a same-core one ~7 µs, so unpinned
single-client figures swing 5x. Pinning makes runs comparable; the servers' original CPU
masks are restored afterwards.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime

CLIENT_CPU = 0
SERVER_CPU = 1


def describe() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{when}; {platform.node()}: {cpu}, {os.cpu_count()} vCPUs, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def _server_pids() -> list[int]:
    pids: list[int] = []
    for name in ("redis-server", "postgres"):
        found = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True)
        pids += [int(pid) for pid in found.stdout.split()]
    return pids


@contextlib.contextmanager
def pinned() -> Iterator[str]:
    """Pin this process to CPU 0 and the local Redis/PostgreSQL processes to CPU 1."""
    if (os.cpu_count() or 1) < 2:
        yield "not pinned (one CPU)"
        return
    original: dict[int, set[int]] = {}
    for pid in _server_pids():
        with contextlib.suppress(OSError):
            original[pid] = os.sched_getaffinity(pid)
            for task in os.listdir(f"/proc/{pid}/task"):
                os.sched_setaffinity(int(task), {SERVER_CPU})
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {CLIENT_CPU})
    try:
        servers = (
            f"{len(original)} server processes on CPU {SERVER_CPU}"
            if original
            else "servers unpinned"
        )
        yield f"client on CPU {CLIENT_CPU}, {servers}"
    finally:
        os.sched_setaffinity(0, mine)
        for pid, mask in original.items():
            with contextlib.suppress(OSError):
                for task in os.listdir(f"/proc/{pid}/task"):
                    os.sched_setaffinity(int(task), mask)
