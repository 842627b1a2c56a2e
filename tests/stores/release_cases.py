"""The cases of ``rules.jobs.release`` that the rule mirrors run through a store's
``release_jobs`` (Lua on Redis, PL/pgSQL on PostgreSQL)."""

from __future__ import annotations

from sessionward.clock import FakeClock
from sessionward.rules.jobs import release
from sessionward.stores.protocols import Store
from sessionward.stores.records import JobLimits, NewJob

# max_attempts, runs reaped before this one, cancelled while running, progress reported
RELEASE_CASES = [
    (1, 0, False, 0.0),
    (2, 1, False, 0.5),
    (3, 2, False, 1.0),
    (2, 0, True, 0.25),
    (3, 1, True, 0.0),
]
_LIMITS, _LEASE = JobLimits(3, 8), 10.0


async def check_release_mirrors_the_rule(
    store: Store, clock: FakeClock, max_attempts: int, reaped: int, cancelled: bool,
    progress: float,
) -> None:  # fmt: skip
    assert await store.submit_job(NewJob("j", "u", "k", "{}", max_attempts), max_queued=9)
    for _ in range(reaped):
        assert len(await store.claim_jobs("w0", want=1, limits=_LIMITS, lease=_LEASE)) == 1
        clock.advance(_LEASE)
        assert [r.status for r in await store.reap_jobs(limit=9)] == ["interrupted"]
    assert len(await store.claim_jobs("w", want=1, limits=_LIMITS, lease=_LEASE)) == 1
    if progress:
        await store.progress_job("j", "w", progress, f"at {progress}")
    if cancelled:
        await store.cancel_job("u", "j")
    before = await store.get_job("u", "j")
    assert before is not None
    clock.advance(1.5)
    assert await store.release_jobs("w", ["j"]) == [release(before, clock.now())]
    assert (await store.job_counts()).running == 0
