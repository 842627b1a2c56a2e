from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import SHARED_BACKENDS, url_for

from .server import Server, start


@pytest.fixture(scope="module", params=SHARED_BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("server")
    running = start(url_for(str(request.param), workdir), workdir,
                    SESSIONWARD_LOGIN_IP_MAX_FAILURES="100000")  # fmt: skip
    yield running
    running.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def name() -> str:
    """A username no other test uses (tests share a server)."""
    return f"u{uuid.uuid4().hex[:16]}"
