"""A real Redis Cluster on loopback for the tests: 6 ``redis-server`` processes (3 primaries,
3 replicas) on free ports, data in a temporary directory, stopped by pid.

Ready means: every node says ``cluster_state:ok``, every replica's link to its primary is
up, and ``CLUSTER SLOTS`` lists all 6 nodes (replicas show there only once synced).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import redis

from sessionward.testing import wait_until

NODES = 6
NODE_TIMEOUT_MS = 2000  # a killed primary is replaced within ~4 s (see docs/stores.md)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, start: int = 21000) -> list[int]:
    """``count`` ports p (from ``start``) with p and its cluster bus port p+10000 free."""
    ports: list[int] = []
    port = start + (os.getpid() % 200) * 20
    while len(ports) < count and port < 30000:
        if _free(port) and _free(port + 10000):
            ports.append(port)
        port += 1
    if len(ports) < count:
        raise RuntimeError("no free loopback ports for a Redis Cluster")
    return ports


@dataclass
class Cluster:
    root: Path
    ports: list[int] = field(default_factory=list)
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL naming every node (without options)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=5)

    def start_node(self, port: int) -> None:
        data = self.root / str(port)
        data.mkdir(parents=True, exist_ok=True)
        args = [
            shutil.which("redis-server") or "redis-server",
            *("--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes"),
            *("--cluster-config-file", str(data / "nodes.conf")),
            *("--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--dir", str(data)),
            *("--save", "", "--appendonly", "no", "--logfile", str(data / "redis.log")),
        ]
        self.procs[port] = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        wait_until(lambda: self._answers(port), timeout=10, what=f"redis-server :{port} up")

    def _answers(self, port: int) -> bool:
        try:
            with self.client(port) as c:
                return bool(c.ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        self.ports = free_ports(NODES)
        for port in self.ports:
            self.start_node(port)
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                *("--cluster-replicas", "1", "--cluster-yes"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_ready()

    def alive(self) -> list[int]:
        return [p for p, proc in self.procs.items() if proc.poll() is None]

    def wait_ready(self, timeout: float = 60) -> float:
        return wait_until(self.ready, timeout=timeout, what="the Redis Cluster ready", interval=0.1)

    def ready(self) -> bool:
        alive = self.alive()
        try:
            for port in alive:
                with self.client(port) as c:
                    if "cluster_state:ok" not in c.execute_command("CLUSTER", "INFO"):
                        return False
                    info = c.info("replication")
                    if info["role"] == "slave" and info.get("master_link_status") != "up":
                        return False
            with self.client(alive[0]) as c:
                slots = c.execute_command("CLUSTER", "SLOTS")
        except (redis.RedisError, KeyError):
            return False
        listed = {int(node[1]) for entry in slots for node in entry[2:]}
        return listed == set(alive)

    def primaries(self) -> list[int]:
        found = []
        for port in self.alive():
            with self.client(port) as c:
                if c.info("replication")["role"] == "master":
                    found.append(port)
        return sorted(found)

    def primary_of(self, key: str) -> int:
        """The port of the primary serving ``key``'s slot."""
        port = self.alive()[0]
        with self.client(port) as c:
            slot = int(c.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return int(primary[1])
        raise AssertionError(f"no node serves slot {slot}")

    def kill(self, port: int) -> None:
        """``kill -9`` one node (a hard failover of a primary)."""
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
