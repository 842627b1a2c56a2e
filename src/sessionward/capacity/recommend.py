"""Recommendations in words, from an instance's recent samples and the settings."""

from __future__ import annotations

from collections.abc import Sequence

from ..config import Settings
from .sample import Sample

WINDOW = 300.0  # the last five minutes
SATURATED_SHARE = 0.2  # of the window's samples
MEMORY_NEAR = 90.0  # percent of the limit
CPU_HIGH = 85.0
LOOP_LAG_HIGH = 0.1  # seconds
USERS_NEAR = 0.9  # of capacity_max_active_users


def recommend(samples: Sequence[Sample], settings: Settings) -> list[str]:
    """What to change, one sentence each, from the samples of the last five minutes
    (oldest first); nothing when all is well or there are no samples."""
    if not samples:
        return []
    recent = [s for s in samples if s.at >= samples[-1].at - WINDOW]
    found = [
        _pool(recent),
        _jobs(recent, settings),
        _memory(recent[-1]),
        _cpu(recent),
        _loop_lag(recent),
        _active_users(recent[-1], settings),
    ]
    return [text for text in found if text]


def _share(samples: Sequence[Sample], hit: int) -> int:
    return round(100 * hit / len(samples))


def _pool(samples: Sequence[Sample]) -> str | None:
    saturated = sum(s.pool_saturated for s in samples)
    if saturated < SATURATED_SHARE * len(samples):
        return None
    return (
        f"store pool saturated {_share(samples, saturated)}% of the last 5 minutes: "
        "raise the pool size (pool_max / max_connections in the store URL) or add an instance"
    )


def _jobs(samples: Sequence[Sample], settings: Settings) -> str | None:
    limit = settings.jobs_running
    full = [s for s in samples if (s.jobs_running or 0) >= limit and (s.jobs_queued or 0) > 0]
    if len(full) < SATURATED_SHARE * len(samples):
        return None
    queued = sum(s.jobs_queued or 0 for s in full) / len(full)
    # Little's law: a job waits for about (queued / limit) turns of a running job; the
    # samples tell how long the global limit stayed full
    waited = len(full) * settings.capacity_sample_interval
    return (
        f"jobs waited for the global limit of {limit} for {waited:.0f} s of the last "
        f"5 minutes ({queued:.1f} queued on average): raise jobs_running or add workers"
    )


def _memory(sample: Sample) -> str | None:
    percent = sample.memory_percent
    if percent is None or percent < MEMORY_NEAR:
        return None
    return (
        f"memory at {percent:.0f}% of its limit ({sample.memory_source}): raise the limit, "
        "lower the number of workers per machine, or add an instance"
    )


def _cpu(samples: Sequence[Sample]) -> str | None:
    average = sum(s.cpu_used for s in samples) / len(samples)
    if average < CPU_HIGH:
        return None
    return f"CPU at {average:.0f}% on average over the last 5 minutes: add an instance"


def _loop_lag(samples: Sequence[Sample]) -> str | None:
    worst = max(s.loop_lag for s in samples)
    if worst < LOOP_LAG_HIGH:
        return None
    return (
        f"event-loop lag reached {worst * 1000:.0f} ms in the last 5 minutes: look for blocking "
        "calls on the loop, or run more worker processes"
    )


def _active_users(sample: Sample, settings: Settings) -> str | None:
    limit = settings.capacity_max_active_users
    if not limit or sample.active_users is None or sample.active_users < USERS_NEAR * limit:
        return None
    return (
        f"{sample.active_users} of at most {limit} active users: new logins are refused at "
        "the limit; raise SESSIONWARD_CAPACITY_MAX_ACTIVE_USERS if the instances keep up"
    )
