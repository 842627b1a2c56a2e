"""The app at the top of docs/streamlit.md, run as written: register, save, scan, result."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from sessionward.testing import wait_until
from tests.conftest import url_for

from .conftest import PASSWORD, SECRET, TIMEOUT, restart, texts

DOC = Path(__file__).parents[2] / "docs" / "streamlit.md"


@pytest.fixture(params=["sqlite", "redis"])
def app_file(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    match = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert match is not None
    app = tmp_path / "app.py"
    app.write_text(match.group(1))
    monkeypatch.setenv("APP_STORE", url_for(str(request.param), tmp_path))
    monkeypatch.setenv("APP_SECRET", SECRET)
    return app


def test_the_docs_app_runs_as_written(app_file: Path) -> None:
    restart()
    try:
        at = AppTest.from_file(str(app_file), default_timeout=TIMEOUT).run()
        at.text_input(key="sessionward-login-username").input("alice")
        at.text_input(key="sessionward-login-password").input(PASSWORD)
        next(b for b in at.button if b.label == "Create account").click()
        at.run()
        assert not at.exception and "Hello, alice" in texts(at)

        next(t for t in at.text_input if t.label == "Team").input("blue")
        next(b for b in at.button if b.label == "Save profile").click()
        at.run()
        assert "Saved." in texts(at)
        at.text_area[0].input("mail bob@example.org")
        next(b for b in at.button if b.label == "Scan").click()
        at.run()

        def counted() -> bool:
            at.run()
            return bool(at.json) and json.loads(at.json[0].value).get("email") == 1

        wait_until(counted, timeout=30, what="the scan's counts")
        assert not at.exception
    finally:
        restart()
