"""CPU and memory of this process and of what it may use: cgroup v2 limits when the process
runs in one (``memory.max``, ``memory.current``, ``cpu.max``), else the host's (psutil).

psutil reports the host inside a container (psutil#2100), so the cgroup files are read for
the limits; everything psutil parses (CPU times, RSS, file descriptors, host memory) comes
from psutil. Blocking file reads: call :meth:`MachineProbe.read` from a worker thread.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True, slots=True)
class MachineFigures:
    cpu_process: float  # percent of one core since the previous read
    cpu_used: float  # percent of the limit (cgroup quota, else every core)
    cpu_limit: float  # cores
    memory_used: int
    memory_limit: int | None
    memory_source: str
    rss: int
    open_fds: int


def cgroup_dir(
    root: Path = Path("/sys/fs/cgroup"), proc: Path = Path("/proc/self/cgroup")
) -> Path | None:
    """This process's cgroup v2 directory, or ``None`` when there is no unified hierarchy."""
    if not (root / "cgroup.controllers").is_file():
        return None
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            candidate = root / line[3:].lstrip("/")
            return candidate if candidate.is_dir() else root
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_quota(group: Path | None) -> float | None:
    """Cores allowed by ``cpu.max`` (``"<quota> <period>"``, or ``"max <period>"``)."""
    text = _read(group / "cpu.max") if group else None
    if not text:
        return None
    quota, _, period = text.partition(" ")
    if quota == "max" or not period:
        return None
    return int(quota) / int(period)


def memory_figures(group: Path | None) -> tuple[int, int | None, str] | None:
    """Used bytes, the limit (``None``: unlimited), from the cgroup; ``None`` without one."""
    current = _read(group / "memory.current") if group else None
    if current is None or group is None:
        return None
    limit = _read(group / "memory.max")
    return int(current), None if limit in (None, "max") else int(limit), "cgroup"


class MachineProbe:
    """Reads :class:`MachineFigures`; CPU percentages are over the time since the last read."""

    def __init__(self, group: Path | None = None, *, detect: bool = True) -> None:
        self._group = group if group is not None or not detect else cgroup_dir()
        self._process = psutil.Process(os.getpid())
        # the first readings only start the counts
        self._process.cpu_percent(interval=None)
        psutil.cpu_percent(interval=None)

    def read(self) -> MachineFigures:
        cores = float(psutil.cpu_count() or 1)
        limit = cpu_quota(self._group) or cores
        process = self._process.cpu_percent(interval=None)
        # a quota: the process's share of it; no quota: the machine's busy share
        used = process / limit if limit < cores else psutil.cpu_percent(interval=None)
        memory = memory_figures(self._group)
        if memory is None:
            host = psutil.virtual_memory()
            memory = (host.total - host.available, host.total, "host")
        with self._process.oneshot():
            rss = self._process.memory_info().rss
            fds = self._process.num_fds() if hasattr(self._process, "num_fds") else 0
        return MachineFigures(process, min(used, 100.0), limit, *memory, rss=rss, open_fds=fds)
