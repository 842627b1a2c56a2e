"""Store servers of the reliability suite's own, and a fault proxy in front of one.

Each runs on a free loopback port, in a directory of its own, and is stopped by its pid:
a ``redis-server`` with AOF ``appendfsync always`` (an acknowledged write survives a kill),
a PostgreSQL cluster made with ``initdb`` and run as the ``postgres`` OS user when the test
runs as root, and an asyncio TCP proxy that can delay the store's replies.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sessionward.testing import wait_until
from tests.service.server import free_port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.2):
            return True
    except OSError:
        return False


@dataclass
class OwnRedis:
    """A redis-server with AOF ``appendfsync always``; killed and restarted on one port."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def url(self, prefix: str, **options: str) -> str:
        query = "&".join([f"key_prefix={prefix}", *(f"{k}={v}" for k, v in options.items())])
        return f"redis://127.0.0.1:{self.port}/0?{query}"

    def start(self) -> float:
        """Start it; the monotonic time at which it first answered PING."""
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.workdir), "--save", "", "--appendonly", "yes",
                "--appendfsync", "always", "--daemonize", "no"]  # fmt: skip
        with open(self.workdir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log)
        wait_until(self._pong, timeout=15, what=f"redis-server on port {self.port}", interval=0.005)
        return time.monotonic()

    def kill(self) -> float:
        """SIGKILL it (a crash); the monotonic time at which it was gone."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        return time.monotonic()

    def _pong(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError((self.workdir / "redis.log").read_text()[-2000:])
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path is None:
        raise RuntimeError(f"{name} is not installed (no /usr/lib/postgresql/*/bin/{name})")
    return on_path


@dataclass
class OwnPostgres:
    """A PostgreSQL cluster in a temporary directory; stopped by its postmaster's pid."""

    port: int = field(default_factory=free_port)
    datadir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sw-pg-"))
        self.datadir = self.root / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run it all as the postgres user
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        subprocess.run(
            [*self._as, _pg_bin("initdb"), "-D", str(self.datadir), "-A", "trust",
             "-U", "postgres", "--no-sync", "-E", "UTF8"],
            check=True, capture_output=True,
        )  # fmt: skip

    def start(self) -> float:
        """Start it; the monotonic time at which it accepted connections."""
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
                   "-c fsync=on -c max_connections=60")  # fmt: skip
        subprocess.run(
            [*self._as, _pg_bin("pg_ctl"), "-D", str(self.datadir), "-o", options,
             "-l", str(self.root / "pg.log"), "-w", "-t", "30", "start"],
            check=True, capture_output=True,
        )  # fmt: skip
        wait_until(lambda: _answers(self.port), timeout=15, what="postgres", interval=0.005)
        return time.monotonic()

    def pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self) -> float:
        """Immediate shutdown (SIGQUIT to the postmaster, like ``pg_ctl -m immediate``): no
        checkpoint, recovery from the WAL at the next start. The time it was gone."""
        pid = self.pid()
        assert pid is not None, "postgres is not running"
        os.kill(pid, signal.SIGQUIT)
        wait_until(lambda: not _alive(pid), timeout=20, what="postgres to stop", interval=0.005)
        return time.monotonic()

    def destroy(self) -> None:
        pid = self.pid()
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGQUIT)
            wait_until(lambda: not _alive(pid), timeout=20, what="postgres to stop")
        shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child is gone for our purpose; the postmaster is not our child
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


class FaultProxy:
    """A TCP proxy on its own event loop in a thread; ``delay`` seconds are added before
    each chunk the store sends back (0: pass through)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.delay = 0.0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fault-proxy")
        self._server: asyncio.Server | None = None

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        assert self._ready.wait(10), "the proxy did not start"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, up_writer, slow=False),
            self._pipe(up_reader, writer, slow=True),
            return_exceptions=True,
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, slow: bool
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if slow and self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(chunk)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()
