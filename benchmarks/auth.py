"""Authenticated request round trip vs the same endpoint without auth, per backend, through
a running server; and the login rate with the default argon2 parameters."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .machine import SERVER_CPU
from .measure import Result, interleaved

SECRET = "bench-secret-" + "b" * 40
PASSWORD = "correct horse battery"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(store: str, workdir: Path, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    environment = {**os.environ, "SESSIONWARD_STORE": store, "SESSIONWARD_SECRET_KEY": SECRET,
                   "SESSIONWARD_LOGIN_IP_MAX_FAILURES": "1000000", **env}  # fmt: skip
    command = ["taskset", "-c", str(SERVER_CPU), sys.executable, "-m", "uvicorn", "--factory",
               "benchmarks.auth_app:create", "--port", str(port), "--log-level", "warning",
               "--no-proxy-headers"]  # fmt: skip
    proc = subprocess.Popen(command, env=environment, cwd=Path(__file__).parent.parent,
                            start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    stop(proc)
    raise RuntimeError("the benchmark server did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)


async def bench_auth(store: str, workdir: Path, *, per_task: int) -> list[Result]:
    proc, url = start_server(store, workdir)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await client.post("/v1/auth/register", json={"username": "bench", "password": PASSWORD})
            login = await client.post(
                "/v1/auth/login", json={"username": "bench", "password": PASSWORD}
            )
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}

            async def plain(i: int) -> object:
                return (await client.get("/bench/plain")).raise_for_status()

            async def authed(i: int) -> object:
                return (await client.get("/bench/authed", headers=headers)).raise_for_status()

            ops = {"GET no auth": plain, "GET with auth": authed}
            return await interleaved(ops, tasks=1, per_task=per_task, blocks=20)
    finally:
        stop(proc)


async def bench_login(store: str, workdir: Path, *, logins: int) -> Result:
    """Sequential logins with the default argon2id parameters (slow on purpose)."""
    proc, url = start_server(store, workdir)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            await client.post("/v1/auth/register", json={"username": "bench", "password": PASSWORD})

            async def login(i: int) -> object:
                answer = await client.post(
                    "/v1/auth/login", json={"username": "bench", "password": PASSWORD}
                )
                return answer.raise_for_status()

            [result] = await interleaved({"login (argon2 defaults)": login}, tasks=1,
                                         per_task=logins, blocks=1, warmup=2)  # fmt: skip
            return result
    finally:
        stop(proc)
