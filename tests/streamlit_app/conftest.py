"""Fixtures for the Streamlit helper: a store per test, the app's environment, AppTests.

The apps under test read their store and secret from ``SESSIONWARD_*`` variables
(``Settings.from_env()``), as a deployed app would. ``st.cache_resource`` is process-wide,
so clearing it stands for a restart of the Streamlit server: it closes the cached SyncWard
(its ``on_release``), and the next run opens a new one on the same store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from sessionward import Settings, SyncWard
from tests.conftest import url_for
from tests.service.server import FAST_ARGON2

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "examples" / "scan_dashboard" / "app.py"
SECRET = "streamlit-tests-secret-key-0123456789abcdef"
PASSWORD = "correct horse battery"
TIMEOUT = 30.0


@pytest.fixture(params=["sqlite", "redis", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = url_for(str(request.param), tmp_path)
    monkeypatch.setenv("SESSIONWARD_STORE", url)
    monkeypatch.setenv("SESSIONWARD_SECRET_KEY", SECRET)
    for name, value in FAST_ARGON2.items():
        monkeypatch.setenv(name, value)
    return url


@pytest.fixture
def ward(store: str) -> Iterator[SyncWard]:
    """The test's own SyncWard on the app's store (to make users and look at jobs)."""
    restart()
    with SyncWard(store, settings=app_settings()) as opened:
        yield opened
    restart()


def app_settings() -> Settings:
    """The apps' settings as the environment gives them (fast argon2), for the test's ward."""
    fast = {name.removeprefix("SESSIONWARD_").lower(): value for name, value in FAST_ARGON2.items()}
    return Settings.defaults(secret_key=SECRET, **fast)


def restart() -> None:
    """Close every cached SyncWard: what a restart of the Streamlit server does."""
    st.cache_resource.clear()


def dashboard(token: str | None = None) -> AppTest:
    """A new browser tab on the scan dashboard, logged in with ``token`` if given."""
    at = AppTest.from_file(str(DASHBOARD), default_timeout=TIMEOUT)
    if token is not None:
        at.query_params["sw"] = token
    return at.run()


def log_in(ward: SyncWard, name: str) -> str:
    """Register ``name`` (if new) and return a session token for the app's URL."""
    if ward.users.find(name) is None:
        ward.auth.register(name, PASSWORD)
    return ward.auth.login(name, PASSWORD).refresh_token


def texts(at: AppTest) -> str:
    """Every message, caption, markdown and progress text the last run drew, as one string."""
    parts = [e.value for kind in ("markdown", "info", "warning", "error", "success", "caption")
             for e in getattr(at, kind)]  # fmt: skip
    parts += [str(e.proto.text) for e in at.get("progress")]
    return "\n".join(str(p) for p in parts)
