"""Jobs through real servers: the endpoints, the event stream, WebSocket pushes, two
instances on one store, and a restart with jobs waiting.

Waits are polls of GET with deadlines, or reads of a stream with deadlines."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect

from sessionward.clock import iso_utc
from sessionward.testing import wait_until
from tests.conftest import BACKENDS, SHARED_BACKENDS, url_for

from .server import Server, start
from .test_flows import assert_error, bearer, signed_up

JOB_ENV = {
    "SESSIONWARD_JOBS_PER_USER_QUEUED": "5",
    "SESSIONWARD_JOB_LEASE": "2",
    "SESSIONWARD_LOGIN_IP_MAX_FAILURES": "100000",
    "PYTHONWARNINGS": "default::ResourceWarning",
}
DEADLINE = 15.0
TERMINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module", params=BACKENDS)
def jobs_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("jobs")
    running = start(url_for(str(request.param), workdir), workdir, **JOB_ENV)
    yield running
    running.stop()
    log = running.log.read_text()
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture
def api(jobs_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=jobs_server.url, timeout=30) as client:
        yield client


def user(client: httpx.Client, name: str) -> dict[str, str]:
    return bearer(signed_up(client, name))


def submit(client: httpx.Client, auth: dict[str, str], kind: str, **params: Any) -> str:
    answer = client.post("/v1/jobs", json={"kind": kind, "params": params}, headers=auth)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert set(body) == {"job_id", "status"} and body["status"] in ("queued", "running")
    return str(body["job_id"])


def job(client: httpx.Client, auth: dict[str, str], job_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/jobs/{job_id}", headers=auth)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def wait_for(client: httpx.Client, auth: dict[str, str], job_id: str, *statuses: str,
             deadline: float = DEADLINE) -> dict[str, Any]:  # fmt: skip
    seen: list[dict[str, Any]] = []

    def reached() -> bool:
        seen.append(job(client, auth, job_id))
        return seen[-1]["status"] in statuses

    becoming = f"job {job_id} becoming {'/'.join(statuses)}"
    wait_until(reached, timeout=deadline, what=becoming, interval=0.01)
    return seen[-1]


Event = tuple[str, dict[str, Any]]


def events(client: httpx.Client, auth: dict[str, str], job_id: str) -> list[Event]:
    """Every event of the job's stream, until the server ends it."""
    got: list[Event] = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=auth,
                       timeout=DEADLINE) as stream:  # fmt: skip
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                assert name in ("status", "progress")
                got.append((name, json.loads(line.removeprefix("data: "))))
    return got


def test_kinds_are_listed_with_their_schemas(api: httpx.Client, name: str) -> None:
    answer = api.get("/v1/jobs/kinds", headers=user(api, name))
    assert answer.status_code == 200
    kinds = {k["kind"]: k for k in answer.json()["kinds"]}
    assert set(kinds) == {"sleep", "pii_scan"}
    assert kinds["sleep"]["params_schema"]["properties"]["seconds"]["maximum"] == 600
    assert "steps" in kinds["sleep"]["params_schema"]["properties"]
    assert kinds["pii_scan"]["params_schema"]["required"] == ["text"]
    assert all(k["description"] for k in kinds.values())
    assert_error(api.get("/v1/jobs/kinds"), 401, "unauthorized")


def test_a_job_runs_and_only_its_owner_sees_it(api: httpx.Client, name: str) -> None:
    alice, mallory = user(api, name), user(api, name + "m")
    job_id = submit(api, alice, "sleep", seconds=0.2, steps=2)
    done = wait_for(api, alice, job_id, *TERMINAL)
    assert (done["status"], done["progress"], done["result"], done["error"]) == (
        "succeeded", 1.0, {"slept": 0.2}, None,
    )  # fmt: skip
    assert set(done) == {"job_id", "kind", "status", "progress", "message", "result", "error",
                         "created_at", "started_at", "finished_at"}  # fmt: skip
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]
    assert done["finished_at"].endswith("Z")
    assert [j["job_id"] for j in api.get("/v1/jobs", headers=alice).json()["jobs"]] == [job_id]
    assert api.get("/v1/jobs", headers=mallory).json() == {"jobs": []}
    for answer in (
        api.get(f"/v1/jobs/{job_id}", headers=mallory),
        api.post(f"/v1/jobs/{job_id}/cancel", headers=mallory),
        api.get(f"/v1/jobs/{job_id}/events", headers=mallory),
        api.get("/v1/jobs/no-such-job", headers=alice),
    ):
        assert_error(answer, 404, "not_found")


def test_bad_submits_are_refused_before_anything_is_queued(api: httpx.Client, name: str) -> None:
    alice = user(api, name)
    unknown = api.post("/v1/jobs", json={"kind": "mine_bitcoin", "params": {}}, headers=alice)
    assert_error(unknown, 404, "unknown_kind")
    bad = api.post("/v1/jobs", json={"kind": "sleep", "params": {"seconds": 601, "steps": 0}},
                   headers=alice)  # fmt: skip
    error = assert_error(bad, 422, "invalid_request")
    assert [f["field"] for f in error["fields"]] == ["params.seconds", "params.steps"]
    for body in ({"kind": "sleep", "params": [1]}, {"kind": "sleep", "params": None},
                 {"params": {}}, {"kind": "sleep", "params": {}, "extra": 1}):  # fmt: skip
        assert_error(api.post("/v1/jobs", json=body, headers=alice), 422, "invalid_request")
    big = api.post("/v1/jobs", json={"kind": "pii_scan", "params": {"text": "é" * 600_000}},
                   headers=alice)  # fmt: skip
    assert assert_error(big, 422, "invalid_request")["fields"][0]["field"] == "params.text"
    assert api.get("/v1/jobs", headers=alice).json() == {"jobs": []}


def test_a_full_queue_is_refused_with_429(api: httpx.Client, name: str) -> None:
    alice = user(api, name)
    running = [submit(api, alice, "sleep", seconds=60) for _ in range(3)]
    for job_id in running:
        wait_for(api, alice, job_id, "running")
    waiting = [submit(api, alice, "sleep", seconds=60) for _ in range(5)]
    refused = api.post("/v1/jobs", json={"kind": "sleep", "params": {"seconds": 1}}, headers=alice)
    assert_error(refused, 429, "job_limit")
    assert len(api.get("/v1/jobs", headers=alice).json()["jobs"]) == 8
    for job_id in waiting + running:  # free the slots for the other tests
        assert api.post(f"/v1/jobs/{job_id}/cancel", headers=alice).status_code == 202
    for job_id in running:
        wait_for(api, alice, job_id, "cancelled", deadline=2)
    assert job(api, alice, waiting[0])["started_at"] is None


def test_cancel_queued_and_running(api: httpx.Client, name: str) -> None:
    alice = user(api, name)
    running = submit(api, alice, "sleep", seconds=60, steps=60)
    wait_for(api, alice, running, "running")
    began = time.monotonic()
    answer = api.post(f"/v1/jobs/{running}/cancel", headers=alice)
    assert answer.status_code == 202 and answer.json()["status"] in ("cancelling", "cancelled")
    done = wait_for(api, alice, running, *TERMINAL, deadline=2)
    assert done["status"] == "cancelled" and time.monotonic() - began < 2
    # a finished job stays as it is
    assert api.post(f"/v1/jobs/{running}/cancel", headers=alice).json()["status"] == "cancelled"


def test_the_event_stream_shows_the_job_until_it_ends(api: httpx.Client, name: str) -> None:
    alice = user(api, name)
    job_id = submit(api, alice, "sleep", seconds=1.5, steps=5)
    seen = events(api, alice, job_id)
    assert seen[0][0] == "status" and seen[0][1]["job_id"] == job_id
    assert seen[0][1]["status"] in ("queued", "running")
    assert seen[-1][0] == "status" and seen[-1][1]["status"] == "succeeded"
    assert seen[-1][1] == job(api, alice, job_id)
    progress = [data["progress"] for _, data in seen]
    assert progress == sorted(progress)
    assert len({p for p in progress if 0 < p < 1}) >= 3, progress  # progress on the way
    for (_, before), (event, data) in itertools.pairwise(seen):
        assert event == ("status" if data["status"] != before["status"] else "progress")
    # a finished job's stream: its state, then the end
    assert events(api, alice, job_id) == [("status", seen[-1][1])]


def test_pii_scan_through_the_api(api: httpx.Client, name: str) -> None:
    alice = user(api, name)
    text = "mail a.b@example.com, card 4111 1111 1111 1111, not 4111 1111 1111 1112"
    job_id = submit(api, alice, "pii_scan", text=text)
    done = wait_for(api, alice, job_id, *TERMINAL)
    assert done["status"] == "succeeded"
    assert done["result"]["counts"] == {"email": 1, "iban": 0, "card": 1, "phone": 0}
    assert [(f["type"], f["masked"]) for f in done["result"]["findings"]] == [
        ("email", "a***@example.com"), ("card", "************1111"),
    ]  # fmt: skip
    card = done["result"]["findings"][1]
    assert text[card["start"] : card["end"]] == "4111 1111 1111 1111"


@pytest.mark.anyio
async def test_job_changes_are_pushed_on_the_websocket(jobs_server: Server, name: str) -> None:
    with httpx.Client(base_url=jobs_server.url, timeout=30) as client:
        tokens = signed_up(client, name)
        ws_url = jobs_server.url.replace("http://", "ws://", 1) + "/v1/ws"
        async with connect(ws_url, open_timeout=DEADLINE) as ws:
            await ws.send(json.dumps({"type": "auth", "access_token": tokens["access_token"]}))
            assert json.loads(await ws.recv())["type"] == "ready"
            job_id = submit(client, bearer(tokens), "sleep", seconds=0.5, steps=2)
            pushed = []
            with anyio.fail_after(DEADLINE):
                while not pushed or pushed[-1]["status"] not in TERMINAL:
                    frame = json.loads(await ws.recv())
                    assert frame["type"] == "job" and frame["job_id"] == job_id
                    pushed.append(frame)
    statuses = [f["status"] for f in pushed]
    assert statuses[0] == "queued" and "running" in statuses and statuses[-1] == "succeeded"
    assert [f["progress"] for f in pushed] == sorted(f["progress"] for f in pushed)
    assert pushed[-1]["result"] == {"slept": 0.5}


@pytest.fixture(scope="module", params=SHARED_BACKENDS)
def twin_servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    workdir = tmp_path_factory.mktemp("twins")
    url = url_for(str(request.param), workdir)
    first = start(url, workdir, **JOB_ENV)
    try:
        second = start(url, workdir, **JOB_ENV)
    except BaseException:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


def test_two_instances_share_the_jobs(twin_servers: tuple[Server, Server], name: str) -> None:
    a, b = twin_servers
    with httpx.Client(base_url=a.url, timeout=30) as on_a, \
            httpx.Client(base_url=b.url, timeout=30) as on_b:  # fmt: skip
        alice = user(on_a, name)
        job_id = submit(on_a, alice, "sleep", seconds=0.6, steps=3)
        seen = events(on_b, alice, job_id)  # a stream on B of a job submitted on A
        assert seen[-1][1]["status"] == "succeeded"
        assert [d["progress"] for _, d in seen] == sorted(d["progress"] for _, d in seen)
        # a cancel on one instance stops the job wherever it runs, within 2 s
        for cancel_on in (on_a, on_b):
            job_id = submit(on_a, alice, "sleep", seconds=60, steps=60)
            wait_for(on_b, alice, job_id, "running")
            began = time.monotonic()
            assert cancel_on.post(f"/v1/jobs/{job_id}/cancel", headers=alice).status_code == 202
            wait_for(on_a, alice, job_id, "cancelled", deadline=2)
            assert time.monotonic() - began < 2


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_jobs_waiting_at_a_restart_run_after_it(backend: str, tmp_path: Path, name: str) -> None:
    env = {**JOB_ENV, "SESSIONWARD_JOBS_PER_USER_RUNNING": "1", "SESSIONWARD_JOB_LEASE": "1"}
    url = url_for(backend, tmp_path)
    server = start(url, tmp_path, **env)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as api:
            alice = user(api, name)
            first = submit(api, alice, "sleep", seconds=2, steps=2)  # holds alice's one slot
            waiting = [submit(api, alice, "sleep", seconds=0.1, steps=1) for _ in range(2)]
            wait_for(api, alice, first, "running")
            assert [job(api, alice, j)["status"] for j in waiting] == ["queued", "queued"]
    finally:
        server.stop()
    restarted, restarted_at = time.monotonic(), iso_utc(time.time())
    server = start(url, tmp_path, **env)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as api:
            for job_id in [first, *waiting]:
                done = wait_for(api, alice, job_id, *TERMINAL, deadline=20)
                assert done["status"] == "succeeded", done
                assert done["started_at"] > restarted_at  # (server clocks: this machine's)
            # the first job's worker handed it back as the server stopped: it ran again first
            # (its place in alice's queue), for its 2 s, and only then did her waiting jobs
            # get her one slot
            assert time.monotonic() - restarted > 2
    finally:
        server.stop()


def test_an_open_event_stream_does_not_hold_a_shutdown(tmp_path: Path, name: str) -> None:
    server = start(url_for("sqlite", tmp_path), tmp_path, **JOB_ENV)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as api:
            alice = user(api, name)
            endless = submit(api, alice, "sleep", seconds=600)
            wait_for(api, alice, endless, "running")
            stream = _open_stream(server.url, alice, endless)
            stopping = time.monotonic()
            server.stop()  # serve's --shutdown-timeout is 5 s
            assert time.monotonic() - stopping < 10, "an open event stream held the shutdown"
            stream.join(5)
            assert not stream.is_alive(), "the event stream outlived the server"
    finally:
        server.stop()
    log = server.log.read_text()
    assert "Traceback" not in log and "Application shutdown complete" in log, log[-3000:]


def _open_stream(url: str, auth: dict[str, str], job_id: str) -> threading.Thread:
    """Read a job's event stream in a thread until the server ends it."""
    opened = threading.Event()

    def read() -> None:
        with httpx.Client(base_url=url, timeout=30) as client, client.stream(
            "GET", f"/v1/jobs/{job_id}/events", headers=auth
        ) as stream:  # fmt: skip
            opened.set()
            try:
                for _ in stream.iter_lines():
                    pass
            except httpx.HTTPError:
                pass  # the server went away: the stream ended

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    assert opened.wait(DEADLINE)
    return thread
