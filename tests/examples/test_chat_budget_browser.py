"""The chat_budget page in headless Chromium: register, log in, chat, order a test and see
the budget fall; the lockout message after failed logins; the rate-limit message. A
screenshot is kept."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser import chromium
from tests.conftest import url_for

from .chat_app import PASSWORD, App, start_app

TIMEOUT_MS = 5000


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    workdir = tmp_path_factory.mktemp("chat-browser")
    started = start_app(url_for("sqlite", workdir), workdir)
    yield started
    started.stop()


@pytest.fixture
def page() -> Iterator[Page]:
    with chromium() as browser:
        yield browser.new_page()


def sign_in(page: Page, app: App, name: str, password: str = PASSWORD) -> None:
    page.goto(app.url + "/")
    page.fill("#username", name)
    page.fill("#password", password)


def test_a_user_chats_orders_and_sees_the_budget(app: App, page: Page, tmp_path: Path) -> None:
    name = f"u{uuid.uuid4().hex[:10]}"
    sign_in(page, app, name)
    page.click("#do-register")
    expect(page.locator("#notice")).to_have_text("Registered: now log in.", timeout=TIMEOUT_MS)
    page.click("#do-login")
    expect(page.locator("#budget")).to_have_text("600", timeout=TIMEOUT_MS)
    page.fill("#text", "hello, room")
    page.press("#text", "Enter")
    expect(page.locator("#log")).to_contain_text(f"{name}: hello, room", timeout=TIMEOUT_MS)
    page.click("#order")
    expect(page.locator("#budget")).to_have_text("350", timeout=TIMEOUT_MS)
    expect(page.locator("#log")).to_contain_text("ordered: blood count", timeout=TIMEOUT_MS)
    page.click("#order")
    page.click("#order")  # 600 pays for two tests, not three
    expect(page.locator("#notice")).to_have_text(
        "Not enough budget left (100 cents).", timeout=TIMEOUT_MS
    )
    shot = tmp_path / "chat_budget.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 0
    page.click("#logout")  # the server closes the socket with 4401
    expect(page.locator("#notice")).to_have_text("Signed out.", timeout=TIMEOUT_MS)
    expect(page.locator("#login")).to_be_visible()


def test_the_lockout_is_shown_on_the_login_page(app: App, page: Page) -> None:
    name = f"u{uuid.uuid4().hex[:10]}"
    sign_in(page, app, name)
    page.click("#do-register")
    expect(page.locator("#notice")).to_have_text("Registered: now log in.", timeout=TIMEOUT_MS)
    page.fill("#password", "not the password")
    for _ in range(3):
        page.click("#do-login")
        expect(page.locator("#notice")).to_have_text(
            "Invalid username or password.", timeout=TIMEOUT_MS
        )
        page.evaluate("document.getElementById('notice').textContent = ''")
    page.fill("#password", PASSWORD)
    page.click("#do-login")
    expect(page.locator("#notice")).to_contain_text("Too many failed logins", timeout=TIMEOUT_MS)
    expect(page.locator("#notice")).to_contain_text("retry in", timeout=TIMEOUT_MS)


def test_the_chat_rate_is_shown(app: App, page: Page) -> None:
    name = f"u{uuid.uuid4().hex[:10]}"
    sign_in(page, app, name)
    page.click("#do-register")
    expect(page.locator("#notice")).to_have_text("Registered: now log in.", timeout=TIMEOUT_MS)
    page.click("#do-login")
    expect(page.locator("#budget")).to_have_text("600", timeout=TIMEOUT_MS)
    for n in range(7):  # the app allows 6 a minute
        page.fill("#text", f"m{n}")
        page.press("#text", "Enter")
    expect(page.locator("#notice")).to_contain_text("Slow down: try again in", timeout=TIMEOUT_MS)
    expect(page.locator("#log")).to_contain_text(f"{name}: m5", timeout=TIMEOUT_MS)
    expect(page.locator("#log")).not_to_contain_text(f"{name}: m6")
