"""The chat_budget example as a real uvicorn process on a loopback port, stopped by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from sessionward.testing.waiting import wait_until
from tests.service.server import FAST_ARGON2, free_port

EXAMPLE = Path(__file__).parents[2] / "examples" / "chat_budget"
PASSWORD = "a long enough password"
DEADLINE = 5.0
ENV = {
    **FAST_ARGON2,
    "APP_SECRET": "chat-budget-test-secret-" + "c" * 32,
    "APP_BUDGET": "600",  # two tests of 250, not three
    "APP_CHAT_RATE": "6/minute",
    "APP_REGISTER_RATE": "1000/minute",
    "SESSIONWARD_LOGIN_MAX_FAILURES": "3",
    "SESSIONWARD_WS_AUTH_TIMEOUT": "0.5",
    "PYTHONWARNINGS": "default::ResourceWarning",
}


@dataclass
class App:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        text = self.log.read_text()
        for sign in ("Traceback", "Exception in ASGI", "never awaited", "ResourceWarning"):
            assert sign not in text, f"{sign} in {self.log}:\n{text[-3000:]}"


def start_app(store: str, workdir: Path) -> App:
    port = free_port()
    log = workdir / f"app-{port}.log"
    env = {**os.environ, **ENV, "APP_STORE": store}
    command = [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(EXAMPLE),
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    app = App(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_until(lambda: _answers(app), timeout=60, what="the example app starting")
    except BaseException:
        app.stop()
        raise
    return app


def _answers(app: App) -> bool:
    if app.proc.poll() is not None:
        raise RuntimeError(f"the app exited: {app.log.read_text()[-3000:]}")
    try:
        return httpx.get(app.url + "/", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
