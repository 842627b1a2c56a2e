"""One capacity sample: what an instance and its store looked like at one moment."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class Sample:
    """Figures of one instance at ``at`` (wall-clock seconds). ``None``: not measurable
    (no cgroup limit, the store did not answer in time, ...). CPU is in percent of one core
    (``cpu_process``) and of the whole machine or cgroup quota (``cpu_used``); memory in
    bytes; times in seconds. Deployment figures (``active_*``, ``jobs_*``) come from the
    store, so every instance reports the same ones."""

    instance_id: str
    at: float
    cpu_process: float = 0.0
    cpu_used: float = 0.0
    cpu_limit: float | None = None  # cores (cgroup cpu.max), or the machine's count
    memory_used: int = 0
    memory_limit: int | None = None
    memory_source: str = "host"  # "cgroup" when memory.max/memory.current were read
    rss: int = 0
    open_fds: int = 0
    loop_lag: float = 0.0  # the worst lag since the previous sample
    pool_in_use: int = 0
    pool_idle: int = 0
    pool_waiting: int = 0
    pool_max: int = 0
    pool_wait: float = 0.0  # seconds callers waited for a store connection since the last sample
    store_latency: float | None = None
    active_sessions: int | None = None
    active_users: int | None = None
    jobs_running: int | None = None
    jobs_queued: int | None = None
    request_rate: float = 0.0  # requests per second over the request window
    latency_p50: float | None = None
    latency_p99: float | None = None
    websockets: int = 0
    rate_limited: int = 0  # totals since this instance started
    lockouts: int = 0
    admitted: int = 0
    refused: int = 0
    errors: tuple[str, ...] = ()

    @property
    def memory_percent(self) -> float | None:
        if not self.memory_limit:
            return None
        return 100.0 * self.memory_used / self.memory_limit

    @property
    def pool_saturated(self) -> bool:
        """Every connection busy, or a caller waiting for one."""
        return self.pool_waiting > 0 or (self.pool_max > 0 and self.pool_in_use >= self.pool_max)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Sample:
        """A sample another instance published; unknown fields (a newer version's) are
        ignored, missing ones take their defaults."""
        raw: dict[str, Any] = json.loads(text)
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        if "errors" in values:
            values["errors"] = tuple(values["errors"])
        return cls(**values)
