"""The `sessionward` command against real stores, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from sessionward import Settings, open_ward
from tests.conftest import url_for
from tests.service.server import FAST_ARGON2, start

PASSWORD = "correct horse battery"


def sw(
    *args: str, store: str, cwd: Path, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **FAST_ARGON2, "SESSIONWARD_STORE": store, "COLUMNS": "200", **env}
    return subprocess.run([sys.executable, "-m", "sessionward", *args], input=stdin, cwd=cwd,
                          env=environment, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_users_create_list_disable(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'sw.db'}"
    made = sw("users", "create", "alice", "--admin", "--password-stdin", store=store, cwd=tmp_path,
              stdin=PASSWORD + "\n")  # fmt: skip
    assert made.returncode == 0 and "created alice" in made.stdout and "admin" in made.stdout
    again = sw("users", "create", "ALICE", "--password-stdin", store=store, cwd=tmp_path,
               stdin=PASSWORD + "\n")  # fmt: skip
    assert again.returncode == 1 and "taken" in again.stderr and "Traceback" not in again.stderr
    short = sw("users", "create", "bob", "--password-stdin", store=store, cwd=tmp_path, stdin="x\n")
    assert short.returncode == 1 and "10 to 1024 characters" in short.stderr
    listed = sw("users", "list", store=store, cwd=tmp_path)
    assert "alice" in listed.stdout and "admin" in listed.stdout and "bob" not in listed.stdout
    assert sw("users", "disable", "alice", store=store, cwd=tmp_path).returncode == 0
    assert "yes" in sw("users", "list", store=store, cwd=tmp_path).stdout
    missing = sw("users", "disable", "nobody", store=store, cwd=tmp_path)
    assert missing.returncode == 1 and "no user named 'nobody'" in missing.stderr


async def _login(store: str, times: int) -> list[str]:
    settings = Settings(
        **{k.removeprefix("SESSIONWARD_").lower(): v for k, v in FAST_ARGON2.items()}
    )
    async with open_ward(store, settings=settings, sweep=False) as ward:
        await ward.users.create("carol", PASSWORD)
        made = [await ward.sessions.create((await ward.users.find("carol")).user_id)  # type: ignore[union-attr]
                for _ in range(times)]  # fmt: skip
        return [m.session.session_id for m in made]


async def _session_without_account(store: str) -> str:
    """A session of an application's own user id, for which no account exists (the library
    does not require one): only a lookup by the session id can find it, not a walk over the
    accounts."""
    async with open_ward(store, settings=Settings(), sweep=False) as ward:
        return (await ward.sessions.create("app-user-7")).session.session_id


@pytest.mark.parametrize("backend", ["sqlite", "redis", "postgresql"], indirect=True)
def test_sessions_revoke_finds_a_session_by_its_id_alone(store_url: str, tmp_path: Path) -> None:
    session_id = anyio.run(_session_without_account, store_url)
    one = sw("sessions", "revoke", session_id, store=store_url, cwd=tmp_path)
    assert one.returncode == 0 and "revoked 1" in one.stdout, one.stderr
    again = sw("sessions", "revoke", session_id, store=store_url, cwd=tmp_path)
    assert again.returncode == 1 and "no active session" in again.stderr


@pytest.mark.parametrize("backend", ["sqlite", "redis", "postgresql"], indirect=True)
def test_sessions_list_and_revoke(store_url: str, tmp_path: Path) -> None:
    ids = anyio.run(_login, store_url, 3)
    listed = sw("sessions", "list", "--user", "carol", store=store_url, cwd=tmp_path)
    assert listed.returncode == 0 and all(i in listed.stdout for i in ids)
    one = sw("sessions", "revoke", ids[0], store=store_url, cwd=tmp_path)
    assert one.returncode == 0 and "revoked 1" in one.stdout
    assert ids[0] not in sw("sessions", "list", store=store_url, cwd=tmp_path).stdout
    again = sw("sessions", "revoke", ids[0], store=store_url, cwd=tmp_path)
    assert again.returncode == 1 and "no active session" in again.stderr
    everything = sw("sessions", "revoke", "--user", "carol", store=store_url, cwd=tmp_path)
    assert everything.returncode == 0 and "revoked 2" in everything.stdout
    both = sw("sessions", "revoke", ids[1], "--user", "carol", store=store_url, cwd=tmp_path)
    assert both.returncode == 2
    assert "removed" in sw("cleanup", store=store_url, cwd=tmp_path).stdout


@pytest.mark.parametrize("backend", ["sqlite", "redis", "postgresql"], indirect=True)
def test_doctor(store_url: str, backend: str, tmp_path: Path) -> None:
    done = sw("doctor", store=store_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert backend in done.stdout and "round trip" in done.stdout and "ok" in done.stdout


@pytest.mark.parametrize(
    "store", ["redis://127.0.0.1:1/0", "postgresql://postgres@127.0.0.1:1/test?connect_timeout=1"]
)
def test_doctor_on_an_unreachable_store(store: str, tmp_path: Path) -> None:
    done = sw("doctor", store=store, cwd=tmp_path)
    assert done.returncode == 1
    assert "unavailable" in done.stderr and "Traceback" not in done.stderr + done.stdout


def test_bad_settings_are_one_sentence(tmp_path: Path) -> None:
    done = sw("doctor", store="mysql://x", cwd=tmp_path)
    assert done.returncode == 2 and "unknown storage URL scheme 'mysql'" in done.stderr
    bad = sw("doctor", store="memory://", cwd=tmp_path, SESSIONWARD_SESSIONS_PER_USER="many")
    assert bad.returncode == 2 and "SESSIONWARD_SESSIONS_PER_USER is invalid" in bad.stderr


def test_serve_refuses_memory_with_workers(tmp_path: Path) -> None:
    done = sw("serve", "--workers", "2", store="memory://", cwd=tmp_path)
    assert done.returncode == 2 and "memory:// store lives in one process" in done.stderr


def test_serve_with_two_workers_shares_one_store(tmp_path: Path) -> None:
    server = start(url_for("sqlite", tmp_path), tmp_path, workers=2)
    try:
        with httpx.Client(base_url=server.url) as client:
            client.post("/v1/auth/register", json={"username": "dave", "password": PASSWORD})
            tokens = [client.post("/v1/auth/login", json={"username": "dave", "password": PASSWORD})
                      for _ in range(6)]  # fmt: skip
            assert all(t.status_code == 200 for t in tokens)
            for t in tokens:  # whichever worker answers, it knows every session and the key
                bearer = {"Authorization": f"Bearer {t.json()['access_token']}"}
                assert client.get("/v1/sessions", headers=bearer).status_code == 200
        assert "with 2 worker(s)" in server.log.read_text()
    finally:
        server.stop()


@pytest.mark.parametrize(
    "store", ["redis://127.0.0.1:1/0", "postgresql://postgres@127.0.0.1:1/test?pool_timeout=1"]
)
def test_serve_with_an_unreachable_store_is_one_sentence(tmp_path: Path, store: str) -> None:
    done = sw("serve", "--port", "1", store=store, cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "listening" not in done.stdout
    assert done.stderr.count("\n") == 1 and "store is unavailable" in done.stderr
