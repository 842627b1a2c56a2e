"""Property-based fuzzing of the OpenAPI schema (schemathesis): no input yields a 500.

Two runs against a real server: every operation anonymously, then with a live bearer token
every operation but the ones that end that token's session (logout, and deleting a session:
the fuzzer follows the link from the session list to its own session), which would hide the
rest behind 401.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import url_for

from .server import Server, start
from .test_flows import PASSWORD

SCHEMATHESIS = shutil.which("schemathesis", path=str(Path(sys.executable).parent))


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("fuzz")
    running = start(url_for("sqlite", workdir), workdir,
                    SESSIONWARD_LOGIN_IP_MAX_FAILURES="1000000")  # fmt: skip
    yield running
    running.stop()


def _run(server: Server, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert SCHEMATHESIS is not None, "schemathesis is a dev dependency: make test installs it"
    command = [
        SCHEMATHESIS, "run", f"{server.url}/openapi.json", "--checks", "not_a_server_error",
        "--max-examples", "40", "--seed", "20261121", "--report-dir", str(tmp_path), *extra,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_no_input_is_a_server_error(fuzzed: Server, tmp_path: Path) -> None:
    anonymous = _run(fuzzed, tmp_path)
    assert anonymous.returncode == 0, anonymous.stdout[-4000:]
    with httpx.Client(base_url=fuzzed.url) as client:
        client.post("/v1/auth/register", json={"username": "fuzzer", "password": PASSWORD})
        login = client.post("/v1/auth/login", json={"username": "fuzzer", "password": PASSWORD})
        token = login.json()["access_token"]
    authed = _run(fuzzed, tmp_path, "-H", f"Authorization: Bearer {token}",
                  "--exclude-path-regex", r"logout|/v1/sessions/\{session_id\}")  # fmt: skip
    assert authed.returncode == 0, authed.stdout[-4000:]
    assert "Authentication failed" not in authed.stdout, authed.stdout[-6000:]
    assert "500" not in fuzzed.log.read_text()
