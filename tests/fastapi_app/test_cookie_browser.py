"""Cookie mode in headless Chromium against a real uvicorn server: the browser keeps the
refresh cookie from page scripts and sends it (with ``Origin``) to the refresh path; a form
posted from another port of the same site carries the cookie and is refused 403
``csrf_failed``; one from another site does not even carry it. A screenshot is kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page

from sessionward.testing import wait_until
from tests.browser import chromium
from tests.conftest import url_for
from tests.service.server import free_port

from .apps import PASSWORD, new_name

ROOT = Path(__file__).parents[2]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("cookie-browser")
    port = free_port()
    env = {**os.environ, "APP_STORE": url_for("sqlite", workdir),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}  # fmt: skip
    log = open(workdir / "uvicorn.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "tests.fastapi_app.cookie_app:create",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://localhost:{port}"
    try:
        wait_until(lambda: proc.poll() is not None or _answers(url + "/openapi.json"),
                   timeout=30, what="the app answering")  # fmt: skip
        assert proc.poll() is None, (workdir / "uvicorn.log").read_text()
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
        log.close()


@pytest.fixture
def page() -> Iterator[Page]:
    with chromium() as browser:
        yield browser.new_page()


def _serve(page: Page, url: str, html: str) -> None:
    page.route(url, lambda route: route.fulfill(status=200, content_type="text/html", body=html))


def _call(page: Page, path: str, method: str = "POST", body: object = None) -> dict[str, object]:
    return dict(page.evaluate(
        """async ([path, method, body]) => {
            const init = {method, headers: {}};
            if (body !== null) {
                init.body = JSON.stringify(body);
                init.headers["content-type"] = "application/json";
            }
            const answer = await fetch(path, init);
            return {status: answer.status, body: answer.status === 204 ? {} : await answer.json()};
        }""",
        [path, method, body],
    ))  # fmt: skip


def _forged(page: Page, evil: str, target: str) -> tuple[int, str]:
    """A page at ``evil`` auto-submits a form to ``target``: the status and text it got."""
    form = (
        f'<form method="post" action="{target}"></form><script>document.forms[0].submit()</script>'
    )
    _serve(page, evil, form)
    with page.expect_response(target) as answer:
        page.goto(evil)
    return answer.value.status, answer.value.text()


def test_the_browser_keeps_sends_and_guards_the_refresh_cookie(
    app_url: str, page: Page, tmp_path: Path
) -> None:
    _serve(page, f"{app_url}/blank", "<h1>the app's own page</h1>")
    page.goto(f"{app_url}/blank")
    creds = {"username": new_name(), "password": PASSWORD}
    assert _call(page, "/auth/register", body=creds)["status"] == 201
    login = _call(page, "/auth/login", body=creds)
    assert login["status"] == 200 and "refresh_token" not in dict(login["body"])  # type: ignore[arg-type]
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script sees it
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "sw_refresh"]
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (
        True,
        "Strict",
        "/auth/refresh",
    )
    assert _call(page, "/auth/refresh")["status"] == 200  # the browser sent cookie and Origin

    port = app_url.rsplit(":", 1)[1]
    other = int(port) + 1 if int(port) < 65535 else int(port) - 1
    status, text = _forged(page, f"http://localhost:{other}/evil", f"{app_url}/auth/refresh")
    assert (
        status == 403 and "csrf_failed" in text
    )  # same site: the cookie went, Origin did not match
    status, text = _forged(page, f"http://127.0.0.1:{other}/evil", f"{app_url}/auth/refresh")
    assert status == 401 and "invalid_token" in text  # another site: SameSite=Strict kept it home

    page.goto(f"{app_url}/blank")
    after = _call(page, "/auth/refresh")
    assert after["status"] == 200  # the forgeries spent and deleted nothing
    seen = [
        "login: 200, no refresh_token in the body",
        "document.cookie: ''",
        f"cookie: {sorted((k, v) for k, v in cookie.items() if k != 'value')}",
        "refresh from the app's page: 200",
        "form from localhost:other: 403 csrf_failed",
        "form from 127.0.0.1:other: 401 invalid_token",
        f"refresh after: {after['status']}",
    ]
    page.set_content("<h2>cookie mode in Chromium</h2><pre>" + "\n".join(seen) + "</pre>")
    page.screenshot(path=str(tmp_path / "cookie-mode.png"))
    assert (tmp_path / "cookie-mode.png").stat().st_size > 0
    assert _call(page, "/auth/refresh", method="DELETE")["status"] == 204
    assert [c for c in page.context.cookies() if c["name"] == "sw_refresh"] == []
