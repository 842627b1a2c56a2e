"""Admission control and /metrics from outside, against a real service on SQLite, Redis
and PostgreSQL: a third user's login is refused while the first two keep working, a full
queue refuses submits, a refused WebSocket closes with 1013, an admin is never refused,
and the metrics parse with prometheus-client's own parser."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from sessionward import Settings, open_ward
from sessionward.testing import wait_until
from tests.conftest import SHARED_BACKENDS, url_for
from tests.service.server import SECRET, Server, free_port, start
from tests.service.test_flows import PASSWORD, assert_error, bearer

ADMIN_PASSWORD = "admin password, long enough"


def make_admin(server: Server, name: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "sessionward", "users", "create", name, "--admin",
         "--password-stdin"],
        input=ADMIN_PASSWORD.encode(), env=server.env, check=True, capture_output=True,
        timeout=60,
    )  # fmt: skip


def register(client: httpx.Client, name: str) -> None:
    answer = client.post("/v1/auth/register", json={"username": name, "password": PASSWORD})
    assert answer.status_code == 201, answer.text


def login(client: httpx.Client, name: str, password: str = PASSWORD) -> httpx.Response:
    return client.post("/v1/auth/login", json={"username": name, "password": password})


def tokens(client: httpx.Client, name: str, password: str = PASSWORD) -> dict[str, Any]:
    answer = login(client, name, password)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


@pytest.fixture(params=SHARED_BACKENDS)
def limited(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[httpx.Client]:
    server = start(url_for(str(request.param), tmp_path), tmp_path,
                   SESSIONWARD_CAPACITY_MAX_ACTIVE_USERS="2",
                   SESSIONWARD_CAPACITY_MAX_QUEUED_JOBS="2",
                   SESSIONWARD_JOBS_RUNNING="1")  # fmt: skip
    make_admin(server, "root")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client
    server.stop()
    assert "Traceback" not in server.log.read_text()


def test_active_users_and_queued_jobs_limits(limited: httpx.Client) -> None:
    client = limited
    for name in ("ann", "ben", "cat"):
        register(client, name)
    ann, ben = bearer(tokens(client, "ann")), bearer(tokens(client, "ben"))
    refused = login(client, "cat")
    error = assert_error(refused, 503, "over_capacity")
    assert float(refused.headers["Retry-After"]) >= 1 and error["message"]
    assert_error(login(client, "nobody"), 503, "over_capacity")  # unknown: the same answer
    # the two already in keep working, and may log in again
    assert client.get("/v1/sessions", headers=ann).status_code == 200
    assert client.put("/v1/state/user/doc", json={"data": 1}, headers=ben).status_code in (200, 201)
    assert login(client, "ann").status_code == 200
    root = bearer(tokens(client, "root", ADMIN_PASSWORD))  # an admin is never refused
    # a full queue: one job runs (JOBS_RUNNING=1), two wait, the next submit is refused
    submitted = [_submit(client, ann) for _ in range(3)]
    assert [s.status_code for s in submitted] == [202, 202, 202]
    assert_error(_submit(client, ben), 503, "over_capacity")
    assert _submit(client, root).status_code == 202  # admins: never
    for answer in submitted:
        client.post(f"/v1/jobs/{answer.json()['job_id']}/cancel", headers=ann)
    assert _submit(client, ben).status_code == 202  # the queue drained below the line
    decisions = _families(client.get("/metrics", headers=root).text)
    refusals = {
        (s.labels["kind"], s.labels["reason"]): s.value
        for s in decisions["sessionward_admission_decisions"].samples
        if s.name.endswith("_total") and s.labels["decision"] == "refused"
    }
    assert refusals == {("login", "active_users"): 2.0, ("job", "queued_jobs"): 1.0}


def _submit(client: httpx.Client, auth: dict[str, str]) -> httpx.Response:
    return client.post("/v1/jobs", json={"kind": "sleep", "params": {"seconds": 30}},
                       headers=auth)  # fmt: skip


def _families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


@pytest.fixture(params=SHARED_BACKENDS)
def full(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """A service whose memory gate is always over: everything new is refused but admins."""
    server = start(url_for(str(request.param), tmp_path), tmp_path,
                   SESSIONWARD_CAPACITY_MAX_MEMORY="0.001")  # fmt: skip
    make_admin(server, "root")
    yield server
    server.stop()
    assert "Traceback" not in server.log.read_text()


@pytest.mark.anyio
async def test_a_refused_websocket_closes_with_1013(full: Server) -> None:
    with httpx.Client(base_url=full.url, timeout=30) as client:
        register(client, "dan")
        assert_error(login(client, "dan"), 503, "over_capacity")
        root = tokens(client, "root", ADMIN_PASSWORD)
        # an admin's WebSocket is admitted: it says ready
        ws_url = full.url.replace("http", "ws") + "/v1/ws"
        async with connect(ws_url) as ws:
            await ws.send(json.dumps({"type": "auth", "access_token": root["access_token"]}))
            assert '"ready"' in str(await ws.recv())
        # a user's token made through the library (which admits no one: only the service
        # asks admission) opens a WebSocket that the service then refuses
        settings = Settings(secret_key=SECRET, argon2_time_cost=1, argon2_memory_cost=8,
                            argon2_parallelism=1)  # fmt: skip
        async with open_ward(full.env["SESSIONWARD_STORE"], settings=settings) as ward:
            pair = await ward.auth.login("dan", PASSWORD)
        async with connect(ws_url) as ws:
            await ws.send(json.dumps({"type": "auth", "access_token": pair.access_token}))
            frames, closed = await _until_closed(ws)
        # the guard says ready once the token checks out; admission then closes with 1013
        assert all('"message"' not in f for f in frames)
        assert closed.rcvd is not None and closed.rcvd.code == 1013
        assert closed.rcvd.reason == "over capacity"
        families = _families(client.get("/metrics", headers=bearer(root)).text)
    refused = {
        (s.labels["kind"], s.labels["reason"])
        for s in families["sessionward_admission_decisions"].samples
        if s.name.endswith("_total") and s.labels["decision"] == "refused"
    }
    assert refused == {("login", "memory"), ("websocket", "memory")}


async def _until_closed(ws: ClientConnection) -> tuple[list[str], ConnectionClosed]:
    frames = []
    while True:
        try:
            frames.append(str(await ws.recv()))
        except ConnectionClosed as closed:
            return frames, closed


@pytest.fixture
def metrics_server(tmp_path: Path) -> Iterator[Server]:
    server = start(url_for("sqlite", tmp_path), tmp_path,
                   SESSIONWARD_CAPACITY_SAMPLE_INTERVAL="0.2")  # fmt: skip
    make_admin(server, "root")
    yield server
    server.stop()


def test_metrics_are_admin_only_and_follow_the_conventions(metrics_server: Server) -> None:
    with httpx.Client(base_url=metrics_server.url, timeout=30) as client:
        register(client, "fay")
        fay = bearer(tokens(client, "fay"))
        assert_error(client.get("/metrics"), 401, "unauthorized")
        assert_error(client.get("/metrics", headers=fay), 403, "forbidden")
        root = bearer(tokens(client, "root", ADMIN_PASSWORD))
        login(client, "fay", "wrong password")

        scraped: dict[str, Any] = {}

        def two_active() -> bool:
            scraped.update(_families(client.get("/metrics", headers=root).text))
            users = scraped["sessionward_active_users"].samples
            return bool(users) and users[0].value == 2.0  # from the next sample

        wait_until(two_active, what="two active users in the metrics")
        families = scraped
    wanted = {
        "sessionward_active_sessions": "gauge", "sessionward_active_users": "gauge",
        "sessionward_jobs": "gauge", "sessionward_job_duration_seconds": "histogram",
        "sessionward_admission_decisions": "counter",
        "sessionward_store_pool_connections": "gauge",
        "sessionward_store_latency_seconds": "histogram",
        "sessionward_event_loop_lag_seconds": "gauge",
        "sessionward_http_request_duration_seconds": "histogram",
        "sessionward_websocket_connections": "gauge", "sessionward_rate_limited": "counter",
        "sessionward_logins": "counter",
    }  # fmt: skip
    assert {name: families[name].type for name in wanted} == wanted
    logins = {s.labels["outcome"]: s.value for s in families["sessionward_logins"].samples
              if s.name == "sessionward_logins_total"}  # fmt: skip
    assert logins == {"success": 2.0, "failure": 1.0}
    ids = {"fay", "root"}
    for family in families.values():
        for sample in family.samples:
            assert not ids & set(sample.labels.values()), sample
            assert not {"user", "user_id", "session", "session_id"} & set(sample.labels)


def test_a_finished_job_is_timed_in_the_metrics(metrics_server: Server) -> None:
    with httpx.Client(base_url=metrics_server.url, timeout=30) as client:
        register(client, "gus")
        gus = bearer(tokens(client, "gus"))
        root = bearer(tokens(client, "root", ADMIN_PASSWORD))
        job = client.post("/v1/jobs", json={"kind": "sleep", "params": {"seconds": 0.05}},
                          headers=gus)  # fmt: skip
        assert job.status_code == 202, job.text
        job_id = job.json()["job_id"]
        wait_until(lambda: client.get(f"/v1/jobs/{job_id}", headers=gus).json()["status"]
                   == "succeeded", what="the job to succeed")  # fmt: skip

        def timed() -> float:
            family = _families(client.get("/metrics", headers=root).text)
            counts = [sample.value for sample in
                      family["sessionward_job_duration_seconds"].samples
                      if sample.name.endswith("_count")
                      and sample.labels == {"kind": "sleep", "status": "succeeded"}]  # fmt: skip
            return counts[0] if counts else 0.0

        wait_until(lambda: timed() == 1.0, what="one timed sleep job")


def test_metrics_on_a_separate_port_only(tmp_path: Path) -> None:
    port = free_port()
    server = start(url_for("sqlite", tmp_path), tmp_path, SESSIONWARD_METRICS_ACCESS="port",
                   SESSIONWARD_METRICS_PORT=str(port))  # fmt: skip
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert_error(client.get("/metrics"), 404, "not_found")
            client.get("/v1/health")
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        requests = _families(text)["sessionward_http_requests"].samples
        assert any(s.labels.get("route") == "/v1/health" for s in requests)
    finally:
        server.stop()
    assert "Traceback" not in server.log.read_text()
