"""The admin dashboard in headless Chromium against a real service: an admin signs in, the
charts draw the samples and update themselves, revoking a session from the page closes that
user's WebSocket within 1 s, a job is cancelled from the page, and a non-admin is refused.
Screenshots are kept in the test's tmp_path."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.browser import chromium
from tests.capacity.test_service import ADMIN_PASSWORD, make_admin, register, tokens
from tests.conftest import url_for
from tests.service.server import Server, start
from tests.service.test_flows import PASSWORD, bearer


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    running = start(url_for(str(request.param), tmp_path), tmp_path,
                    SESSIONWARD_CAPACITY_SAMPLE_INTERVAL="0.5")  # fmt: skip
    make_admin(running, "root")
    yield running
    running.stop()
    assert "Traceback" not in running.log.read_text()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def sign_in(page: Page, base: str, name: str, password: str) -> None:
    page.goto(f"{base}/admin")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def _points(page: Page) -> int:
    found = page.eval_on_selector(
        '[data-chart="Active users"] polyline', "e => e.getAttribute('points')"
    )
    return len(str(found).split())


def test_the_dashboard(server: Server, browser: Browser, tmp_path: Path) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as api:
        register(api, "gus")
        gus = tokens(api, "gus")
        job = api.post("/v1/jobs", json={"kind": "sleep", "params": {"seconds": 60}},
                       headers=bearer(gus)).json()["job_id"]  # fmt: skip
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    sign_in(page, server.url, "root", ADMIN_PASSWORD)
    page.wait_for_selector("#overview")
    page.wait_for_function(
        """() => { const l = document.querySelector('[data-chart="Active users"] polyline');
                   return l && l.getAttribute('points').split(' ').length >= 2; }"""
    )
    before = _points(page)
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    # live: the panel is swapped every 5 s with more samples, without a reload
    page.evaluate("window.__kept = true")
    page.wait_for_function(f"() => document.querySelector('[data-chart=\"Active users\"] "
                           f"polyline').getAttribute('points').split(' ').length > {before}",
                           timeout=15_000)  # fmt: skip
    assert page.evaluate("window.__kept") is True  # the same document: no refresh happened
    assert "gus" not in page.inner_text("#instances")  # no user data in the capacity tables
    text = page.inner_text("#overview")
    assert "active users" in text
    # the user: sessions with a revoke button, jobs with a cancel button
    with connect(server.url.replace("http", "ws") + "/v1/ws") as ws:
        ws.send(json.dumps({"type": "auth", "access_token": gus["access_token"]}))
        assert "ready" in str(ws.recv(timeout=10))
        page.fill("input[name=user]", "gus")
        page.click("text=Search")
        page.wait_for_selector("#sessions button")
        page.click("#jobs button")  # cancel
        page.wait_for_selector("#sessions button")
        page.screenshot(path=str(tmp_path / "user.png"), full_page=True)
        clicked = time.monotonic()
        page.click("#sessions button")  # revoke
        closed = _until_closed(ws)
        took = time.monotonic() - clicked
    assert closed.rcvd is not None and closed.rcvd.code == 4401
    assert took < 1.0, took
    with httpx.Client(base_url=server.url, timeout=30) as api:
        assert api.get("/v1/sessions", headers=bearer(gus)).status_code == 401
        again = bearer(tokens(api, "gus"))
        assert api.get(f"/v1/jobs/{job}", headers=again).json()["status"] in (
            "cancelling", "cancelled",
        )  # fmt: skip
    page.close()


def _until_closed(ws: ClientConnection) -> ConnectionClosed:
    while True:
        try:
            ws.recv(timeout=5)
        except ConnectionClosed as closed:
            return closed


def test_a_non_admin_is_refused(server: Server, browser: Browser, tmp_path: Path) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as api:
        register(api, "hal")
        assert api.get("/admin").status_code == 401  # the sign-in form
        assert api.get("/admin/panel").status_code == 401
    page = browser.new_page()
    sign_in(page, server.url, "hal", PASSWORD)
    page.wait_for_selector("text=Only an admin may see this page.")
    page.screenshot(path=str(tmp_path / "refused.png"))
    assert page.context.cookies() == [] or all(
        c["name"] != "sessionward_admin" for c in page.context.cookies()
    )
    page.close()
