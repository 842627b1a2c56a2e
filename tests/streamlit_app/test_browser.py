"""The scan dashboard as a real ``streamlit run`` server, driven by headless Chromium.

Log in (registering), scan a pasted text, see the result; reload the page, then restart
the server, and stay logged in through both. A screenshot of the result is kept in the
test's tmp_path (``scan_dashboard.png``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from sessionward.testing import wait_until
from tests.browser import chromium
from tests.service.server import FAST_ARGON2, free_port

from .conftest import DASHBOARD, PASSWORD, ROOT, SECRET


@dataclass
class StreamlitServer:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(15)


def start(store: str, workdir: Path, port: int) -> StreamlitServer:
    env = {**os.environ, **FAST_ARGON2, "SESSIONWARD_STORE": store,
           "SESSIONWARD_SECRET_KEY": SECRET,
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}  # fmt: skip
    log = workdir / f"streamlit-{port}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(DASHBOARD), "--server.headless=true",
             "--server.address=127.0.0.1", f"--server.port={port}",
             "--browser.gatherUsageStats=false", "--server.fileWatcherType=none"],
            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    server = StreamlitServer(f"http://127.0.0.1:{port}", proc, log)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited: {log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{server.url}/_stcore/health", timeout=1).text == "ok"
        except httpx.TransportError:
            return False

    try:
        wait_until(healthy, timeout=60, what="streamlit's health check")
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture
def page() -> Iterator[Page]:
    with chromium() as browser:
        yield browser.new_page(viewport={"width": 1200, "height": 1400})


def test_log_in_scan_and_see_the_result_in_chromium(page: Page, tmp_path: Path) -> None:
    store, port = f"sqlite:///{tmp_path / 'scan.db'}", free_port()
    server = start(store, tmp_path, port)
    try:
        page.goto(server.url)
        page.get_by_role("textbox", name="Username").fill("alice")
        page.get_by_role("textbox", name="Password").fill(PASSWORD)
        page.get_by_role("button", name="Create account").click()
        expect(page.get_by_text("Logged in as")).to_be_visible(timeout=30_000)
        assert "sw=" in page.url and PASSWORD not in page.url

        page.get_by_label("Text to scan").fill(
            "Write to alice@example.com, card 4111 1111 1111 1111."
        )
        page.get_by_label("Text to scan").press("Control+Enter")
        page.get_by_role("button", name="Run scan").click()
        expect(page.get_by_text("email: 1")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("card: 1")).to_be_visible()
        expect(page.get_by_text("Done")).to_be_visible()
        page.screenshot(path=str(tmp_path / "scan_dashboard.png"), full_page=True)

        page.reload()
        expect(page.get_by_text("Logged in as")).to_be_visible(timeout=30_000)
        server.stop()  # SIGTERM: streamlit exits, and atexit closes the ward and its worker
        assert server.proc.returncode == 0 and "Traceback" not in server.log.read_text()
        server = start(store, tmp_path, port)  # a restart: the same URL logs in again
        page.reload()
        expect(page.get_by_text("Logged in as")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("email: 1")).to_be_visible(timeout=30_000)
    finally:
        server.stop()
    assert (tmp_path / "scan_dashboard.png").stat().st_size > 10_000
