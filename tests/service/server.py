"""A real sessionward server in a subprocess, on a free loopback port, stopped by pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SECRET = "service-test-secret-" + "s" * 40
FAST_ARGON2 = {
    "SESSIONWARD_ARGON2_TIME_COST": "1",
    "SESSIONWARD_ARGON2_MEMORY_COST": "8",
    "SESSIONWARD_ARGON2_PARALLELISM": "1",
}
# Tests fire requests far faster than people do; the rate-limit tests set their own limits.
ROOMY_LIMITS = {
    "SESSIONWARD_IP_RATE_LIMIT": "100000/second",
    "SESSIONWARD_API_RATE_LIMIT": "100000/second",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(15)


def start(store: str, workdir: Path, *, workers: int = 1, **settings: str) -> Server:
    port = free_port()
    env = {**os.environ, **FAST_ARGON2, **ROOMY_LIMITS, "SESSIONWARD_STORE": store,
           "SESSIONWARD_SECRET_KEY": SECRET, "SESSIONWARD_PORT": str(port), **settings}  # fmt: skip
    log = workdir / f"server-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sessionward", "serve", "--workers", str(workers)],
            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", proc, log, env)
    wait_ready(server)
    return server


def wait_ready(server: Server, deadline: float = 60.0) -> None:
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        if server.proc.poll() is not None:
            raise RuntimeError(f"the server exited: {server.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/v1/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling a subprocess's port; the deadline bounds it
    server.stop()
    raise RuntimeError(
        f"the server did not answer in {deadline} s: {server.log.read_text()[-3000:]}"
    )
