"""Property-based fuzzing of the OpenAPI schema (schemathesis, every check): no input yields
a 500, every response has a documented status and matches its schema, a request valid by the
schema is accepted and an invalid one refused, and the stateful phase follows the schema's
links (submit a job, then get, cancel and stream it; write a document, then read it).

Two runs against a real server: every operation anonymously, then with a live bearer token
every operation but the ones that end that token's session (logout, and deleting a session:
the fuzzer follows the link from the session list to its own session), which would hide the
rest behind 401. ``SESSIONWARD_FUZZ_EXAMPLES`` sets the examples per operation (default 25:
both runs take about 40 s on the 2-vCPU test machine) and ``SESSIONWARD_FUZZ_BACKENDS`` the
stores (default ``sqlite``; ``sqlite,redis,postgresql`` for all: 60 examples each passed).
"""

from __future__ import annotations

import os
import re
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
CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = os.environ.get("SESSIONWARD_FUZZ_EXAMPLES", "25")
BACKENDS = os.environ.get("SESSIONWARD_FUZZ_BACKENDS", "sqlite").split(",")


@pytest.fixture(scope="module", params=BACKENDS)
def fuzzed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("fuzz")
    running = start(url_for(str(request.param), workdir), workdir,
                    SESSIONWARD_LOGIN_IP_MAX_FAILURES="1000000")  # fmt: skip
    yield running
    running.stop()


def _run(server: Server, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert SCHEMATHESIS is not None, "schemathesis is a dev dependency: make test installs it"
    command = [
        SCHEMATHESIS, "--config-file", str(CONFIG), "run", f"{server.url}/openapi.json",
        "--checks", "all", "--max-examples", EXAMPLES, "--seed", "20261121",
        "--report-dir", str(tmp_path), *extra,
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
    links = re.search(r"API Links:\s+(\d+) covered / (\d+) selected", authed.stdout)
    assert links is not None, authed.stdout[-6000:]
    assert int(links[1]) >= 5, links[0]  # jobs and state links are followed, not just listed
    assert "500" not in fuzzed.log.read_text()


def test_the_schema_states_what_the_service_checks(fuzzed: Server) -> None:
    """A request valid by the schema is accepted: the username's rules and each job kind's
    params are in it, and every documented error has the error shape."""
    schema = httpx.get(f"{fuzzed.url}/openapi.json").json()
    components = schema["components"]["schemas"]
    username = components["NewAccount"]["properties"]["username"]
    assert (username["pattern"], username["maxLength"]) == ("^[A-Za-z0-9_.-]{3,64}$", 64)
    assert components["NewAccount"]["properties"]["password"]["minLength"] == 10
    kinds = {alt["properties"]["kind"]["const"]: alt for alt in components["JobIn"]["oneOf"]}
    assert set(kinds) == {"sleep", "pii_scan"}
    assert kinds["sleep"]["properties"]["params"]["required"] == ["seconds"]
    charge = schema["paths"]["/v1/budget/charges"]["post"]["responses"]
    assert charge["402"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    error = components["ErrorBody"]
    assert error["required"] == ["code", "message"] and error["additionalProperties"] is True
