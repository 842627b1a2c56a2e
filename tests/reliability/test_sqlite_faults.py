"""SQLite faults: a full disk, several processes on one file under load, a SIGKILL in the
middle of writes. Each ends with ``PRAGMA integrity_check`` = ok and every acknowledged
write present.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from sessionward.testing import wait_until
from tests.reliability.checks import RECOVERY, clean_log
from tests.reliability.conftest import Figures, size
from tests.reliability.traffic import TRAFFIC_SETTINGS, Member, sign_up
from tests.service.server import Server, start

DISK = "3m"  # the tmpfs: room for the schema and some documents, then full
DOC = 100_000  # bytes of JSON per state document


def _integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs mounted by the test (root only)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK},mode=0755", "tmpfs",
                           str(mount)], capture_output=True, text=True)  # fmt: skip
    if made.returncode != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and cannot mount a tmpfs: {made.stderr.strip()}", pytrace=False)
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()}): the full-disk test "
                    "needs root")  # fmt: skip
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _put(client: httpx.Client, member: Member, name: str, data: object) -> httpx.Response:
    return client.put(f"/v1/state/user/{name}", json={"data": data}, headers=member.auth)


def test_a_full_disk_is_503_and_corrupts_nothing(
    small_disk: Path, tmp_path: Path, figures: Figures
) -> None:
    db = small_disk / "sessionward.db"
    filler = small_disk / "filler"
    server = start(f"sqlite:///{db}", tmp_path, **TRAFFIC_SETTINGS)
    acked: dict[str, str] = {}
    try:
        member = sign_up(server.url, "fulldisk")
        with httpx.Client(base_url=server.url, timeout=30) as client:
            filler.write_bytes(b"\0" * 512 * 1024)  # to be freed once the disk is full
            full = None
            for n in range(200):
                data = f"{n:04d}" + "x" * DOC
                answer = _put(client, member, f"doc{n}", data)
                if answer.status_code != 200:
                    full = answer
                    break
                acked[f"doc{n}"] = data
            assert full is not None, "the disk never filled"
            error = full.json()["error"]
            assert (full.status_code, error["code"]) == (503, "store_unavailable"), full.text
            assert full.headers["Retry-After"] == "1"
            again = [_put(client, member, "more", "y" * DOC).status_code for _ in range(5)]
            assert again == [503] * 5
            # reads keep working, and what was acknowledged is there
            for name, data in acked.items():
                got = client.get(f"/v1/state/user/{name}", headers=member.auth)
                assert got.status_code == 200 and got.json()["data"] == data
            assert client.get("/v1/ready").status_code == 200
            filler.unlink()
            recovered = wait_until(
                lambda: _put(client, member, "more", "z").status_code == 200,
                timeout=RECOVERY, what="a write once space is freed",
            )  # fmt: skip
            assert _put(client, member, "after", "w").status_code == 200
            acked["more"], acked["after"] = "z", "w"
            for name, data in acked.items():
                got = client.get(f"/v1/state/user/{name}", headers=member.auth)
                assert got.status_code == 200 and got.json()["data"] == data
        assert 'status="500"' not in httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()
    clean_log(server)
    assert _integrity(db) == "ok"
    with sqlite3.connect(db) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sw_state")}
    assert set(acked) <= names
    figures.record("sqlite: disk full (3 MiB tmpfs), then 512 KiB freed", backend="sqlite",
                   acked_before_full=len(acked) - 2, failed={"503 store_unavailable": 6},
                   recovery_s=round(recovered, 3),
                   integrity="ok", lost=0)  # fmt: skip


INSTANCES = 3
WRITERS = int(size(6, 12))
INCREMENTS = int(size(10, 50))  # compare-and-set increments per writer


def _increment(server: Server, member: Member, count: int) -> tuple[int, int]:
    """``count`` acknowledged compare-and-set increments of one shared counter; the
    conflicts met on the way."""
    done = conflicts = 0
    with httpx.Client(base_url=server.url, timeout=30) as client:
        while done < count:
            got = client.get("/v1/state/user/counter", headers=member.auth)
            assert got.status_code == 200, got.text
            body = got.json()
            headers = {**member.auth, "If-Match": f'"{body["version"]}"'}
            put = client.put("/v1/state/user/counter", json={"data": body["data"] + 1},
                             headers=headers)  # fmt: skip
            if put.status_code == 200:
                done += 1
            else:
                assert put.status_code == 412, put.text
                conflicts += 1
    return done, conflicts


def test_several_processes_on_one_file_count_exactly(tmp_path: Path, figures: Figures) -> None:
    db = tmp_path / "shared.db"
    servers: list[Server] = []
    try:
        for n in range(INSTANCES):
            (tmp_path / f"i{n}").mkdir()
            settings = {**TRAFFIC_SETTINGS, "SESSIONWARD_BUDGET_DEFAULT": "1000"}
            servers.append(start(f"sqlite:///{db}", tmp_path / f"i{n}", **settings))
        member = sign_up(servers[0].url, "shared")
        with httpx.Client(base_url=servers[0].url, timeout=30) as client:
            assert _put(client, member, "counter", 0).status_code == 200
        began = time.monotonic()
        with ThreadPoolExecutor(WRITERS) as pool:
            counts = list(pool.map(lambda n: _increment(servers[n % INSTANCES], member,
                                                        INCREMENTS), range(WRITERS)))  # fmt: skip

            def charge(n: int) -> int:
                body = {"amount": 10, "idempotency_key": f"c{n}"}
                with httpx.Client(base_url=servers[n % INSTANCES].url, timeout=30) as client:
                    return client.post("/v1/budget/charges", json=body,
                                       headers=member.auth).status_code  # fmt: skip

            charges = sorted(pool.map(charge, range(150)))
        took = time.monotonic() - began
        with httpx.Client(base_url=servers[1].url, timeout=30) as client:
            final = client.get("/v1/state/user/counter", headers=member.auth).json()
            spent = client.get("/v1/budget", headers=member.auth).json()["spent"]
        total = sum(done for done, _ in counts)
        assert final["data"] == total == WRITERS * INCREMENTS
        assert final["version"] == total + 1
        assert charges == [201] * 100 + [402] * 50  # 1000 of budget in tens, over 3 processes
        assert spent == 1000
    finally:
        for server in servers:
            server.stop()
    for server in servers:
        clean_log(server)
    assert _integrity(db) == "ok"
    figures.record(f"sqlite: {INSTANCES} processes on one file", backend="sqlite",
                   writers=WRITERS, cas_increments=total,
                   cas_conflicts=sum(c for _, c in counts), charges_allowed=100,
                   charges_refused=50, seconds=round(took, 2), lost=0)  # fmt: skip


WRITER = """
import sys, anyio
from sessionward import open_ward
from sessionward.stores.records import StateScope

async def main():
    async with open_ward(sys.argv[1], sweep=False) as ward:
        n = 0
        while True:
            n += 1
            await ward.store.put_state(StateScope("user", "w"), f"doc{n}", str(n),
                                       expected_version=None)
            print(n, flush=True)

anyio.run(main)
"""


def test_a_kill_during_writes_loses_no_acknowledged_write(tmp_path: Path, figures: Figures) -> None:
    db = tmp_path / "killed.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, f"sqlite:///{db}"],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    acked = 0
    try:
        for line in proc.stdout:
            acked = int(line)
            if acked >= size(300, 5000):
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdout.close()
    assert acked >= size(300, 5000)
    assert _integrity(db) == "ok"
    with sqlite3.connect(db) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sw_state")}
    assert {f"doc{n}" for n in range(1, acked + 1)} <= names
    figures.record("sqlite: SIGKILL of a writing process", backend="sqlite",
                   acked=acked, rows=len(names), integrity="ok", lost=0)  # fmt: skip
