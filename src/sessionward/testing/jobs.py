"""Job-store conformance: queues, fair claims under slot limits, leases, cancel, reaping."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import anyio
import pytest

from ..clock import FakeClock
from ..errors import ConfigurationError
from ..rules.jobs import release
from ..stores.protocols import Store
from ..stores.records import JobLimits, JobRow, NewJob
from ..ward import Ward, open_ward
from .conformance import WardFixtures
from .races import race, run_in_processes

LIMITS = JobLimits(per_user=3, overall=8)
ROUNDS = 5  # of the release race
LEASE = 30.0


async def submit(store: Store, user: str, n: int, *, attempts: int = 2) -> list[JobRow]:
    rows = []
    for i in range(n):
        new = NewJob(f"{user}-job{i}", user, "sleep", "{}", attempts)
        row = await store.submit_job(new, max_queued=100)
        assert row is not None
        rows.append(row)
    return rows


async def claim(store: Store, want: int = 100, limits: JobLimits = LIMITS,
                worker: str = "w1") -> list[str]:  # fmt: skip
    return [r.job_id for r in await store.claim_jobs(worker, want=want, limits=limits, lease=LEASE)]


class JobStoreConformance(WardFixtures):
    async def test_submit_and_bound(self, ward: Ward, clock: FakeClock) -> None:
        store = ward.store
        first = await store.submit_job(NewJob("j1", "u", "sleep", '{"a": 1}', 2), max_queued=2)
        assert first is not None
        assert (first.status, first.progress, first.attempts, first.created_at) == (
            "queued", 0.0, 0, clock.now(),
        )  # fmt: skip
        second = await store.submit_job(NewJob("j2", "u", "sleep", "{}", 2), max_queued=2)
        assert second is not None and second.seq > first.seq
        assert await store.submit_job(NewJob("j3", "u", "sleep", "{}", 2), max_queued=2) is None
        assert await store.submit_job(NewJob("j4", "v", "sleep", "{}", 2), max_queued=2)

    async def test_claims_are_fair_fifo_and_bounded(self, ward: Ward, clock: FakeClock) -> None:
        await submit(ward.store, "a", 5)
        await submit(ward.store, "b", 1)
        claimed = await claim(ward.store, limits=JobLimits(per_user=3, overall=4))
        assert claimed == ["a-job0", "b-job0", "a-job1", "a-job2"]
        assert await claim(ward.store) == []  # a has 3 running; b has nothing waiting
        row = await ward.store.get_job("a", "a-job0")
        assert row is not None and (row.status, row.attempts, row.worker_id) == ("running", 1, "w1")
        assert (row.started_at, row.lease_expires_at) == (clock.now(), clock.now() + LEASE)
        counts = await ward.store.job_counts()
        assert (counts.running, counts.queued) == (4, 2)

    async def test_the_overall_limit(self, ward: Ward) -> None:
        for user in "abcd":
            await submit(ward.store, user, 3)
        assert len(await claim(ward.store)) == 8
        assert await claim(ward.store) == []

    async def test_a_new_user_does_not_wait_behind_a_long_queue(self, ward: Ward) -> None:
        await submit(ward.store, "busy", 20)
        assert len(await claim(ward.store, limits=JobLimits(per_user=3, overall=4))) == 3
        await submit(ward.store, "new", 1)
        assert await claim(ward.store, limits=JobLimits(per_user=3, overall=4)) == ["new-job0"]

    async def test_idle_users_take_turns(self, ward: Ward, clock: FakeClock) -> None:
        """More waiting users than slots: a user whose job just ended goes behind the users
        served longer ago (never served: first), or the oldest queues would keep the slots
        until they are empty (see ``fair_order``)."""
        store, limits = ward.store, JobLimits(per_user=3, overall=2)
        for user in "abc":
            await submit(store, user, 3)
        assert await claim(store, limits=limits) == ["a-job0", "b-job0"]
        clock.advance(1)
        await store.finish_job("a-job0", "w1", "succeeded", "1", None)
        assert await claim(store, limits=limits) == ["c-job0"]  # not a-job1: c waited
        clock.advance(1)
        await store.finish_job("b-job0", "w1", "succeeded", "1", None)
        assert await claim(store, limits=limits) == ["a-job1"]  # a and b last served together
        clock.advance(1)
        await store.finish_job("c-job0", "w1", "succeeded", "1", None)
        assert await claim(store, limits=limits) == ["b-job1"]  # b before c, served later

    async def test_progress_heartbeat_and_finish(self, ward: Ward, clock: FakeClock) -> None:
        store = ward.store
        [job] = await submit(store, "u", 1)
        await claim(store)
        assert await store.progress_job(job.job_id, "w1", 0.5, "half") == "running"
        assert await store.progress_job(job.job_id, "w1", 0.2, "back?") == "running"
        assert await store.progress_job(job.job_id, "other", 0.9, "") is None
        row = await store.get_job("u", job.job_id)
        assert row is not None and (row.progress, row.message) == (0.5, "back?")
        clock.advance(10)
        assert await store.heartbeat_jobs("w1", [job.job_id, "nope"], LEASE) == []
        row = await store.get_job("u", job.job_id)
        assert row is not None and row.lease_expires_at == clock.now() + LEASE
        assert await store.finish_job(job.job_id, "other", "succeeded", "1", None) is None
        done = await store.finish_job(job.job_id, "w1", "succeeded", '{"ok": true}', None)
        assert done is not None and (done.status, done.progress, done.result) == (
            "succeeded", 1.0, '{"ok": true}',
        )  # fmt: skip
        assert done.finished_at == clock.now() and (await store.job_counts()).running == 0

    async def test_a_repeated_submit_finds_its_job(self, ward: Ward) -> None:
        store = ward.store
        new = NewJob("j1", "u", "sleep", '{"a": 1}', 2)
        first = await store.submit_job(new, max_queued=1)
        assert first is not None
        assert await store.submit_job(new, max_queued=1) == first  # not refused as full
        for other in (NewJob("j1", "intruder", "sleep", '{"a": 1}', 2),
                      NewJob("j1", "u", "sleep", '{"a": 2}', 2)):  # fmt: skip
            with pytest.raises(ConfigurationError):  # another job's id: never taken over
                await store.submit_job(other, max_queued=9)
        assert await store.get_job("intruder", "j1") is None
        assert await store.get_job("u", "j1") == first
        assert (await store.job_counts()).queued == 1
        racing = await race([partial(store.submit_job, NewJob("j2", "u", "sleep", "{}", 2),
                                     max_queued=9) for _ in range(10)])  # fmt: skip
        assert len({r.seq for r in racing}) == 1 and (await store.job_counts()).queued == 2

    async def test_a_job_ends_only_with_a_final_status(self, ward: Ward) -> None:
        (job,) = await submit(ward.store, "u", 1)
        await claim(ward.store)
        for status in ("queued", "running", "cancelling", "interrupted"):
            with pytest.raises(ValueError, match="not " + status):
                await ward.store.finish_job(job.job_id, "w1", status, None, None)
        row = await ward.store.get_job("u", job.job_id)
        assert row is not None and row.status == "running"

    async def test_racing_submits_fill_the_queue_exactly(self, ward: Ward) -> None:
        store = ward.store
        news = [NewJob(f"r{n}", "u", "sleep", "{}", 2) for n in range(60)]
        rows = await race([partial(store.submit_job, new, max_queued=20) for new in news])
        assert sum(r is not None for r in rows) == 20
        assert (await store.job_counts()).queued == 20

    async def test_cancel(self, ward: Ward) -> None:
        store = ward.store
        running, waiting = await submit(store, "u", 2)
        await claim(store, want=1)
        assert (await store.cancel_job("u", waiting.job_id)) is not None
        row = await store.cancel_job("u", running.job_id)
        assert row is not None and row.status == "cancelling"
        assert await store.cancel_job("intruder", running.job_id) is None
        assert await store.heartbeat_jobs("w1", [running.job_id], LEASE) == [running.job_id]
        assert await store.progress_job(running.job_id, "w1", 0.3, "") == "cancelling"
        done = await store.finish_job(running.job_id, "w1", "succeeded", "1", None)
        assert done is not None and done.status == "cancelled"
        again = await store.cancel_job("u", running.job_id)
        assert again is not None and again.status == "cancelled"
        cancelled = await store.get_job("u", waiting.job_id)
        assert cancelled is not None and cancelled.status == "cancelled" and cancelled.finished_at

    async def test_a_dead_workers_jobs_are_reaped(self, ward: Ward, clock: FakeClock) -> None:
        store = ward.store
        once, last, stopping = await submit(store, "u", 3, attempts=2)
        await claim(store)
        await store.cancel_job("u", stopping.job_id)
        clock.advance(LEASE - 1)
        assert await store.reap_jobs(limit=10) == []
        clock.advance(1)
        reaped = {r.job_id: r.status for r in await store.reap_jobs(limit=10)}
        assert reaped == {once.job_id: "interrupted", last.job_id: "interrupted",
                          stopping.job_id: "cancelled"}  # fmt: skip
        assert (await store.job_counts()).running == 0
        assert await claim(store, worker="w2") == [once.job_id, last.job_id]
        row = await store.get_job("u", once.job_id)
        assert row is not None and (row.attempts, row.worker_id) == (2, "w2")
        clock.advance(LEASE)
        reaped = {r.job_id: r.status for r in await store.reap_jobs(limit=10)}
        assert reaped == {once.job_id: "failed", last.job_id: "failed"}
        assert await store.finish_job(once.job_id, "w2", "succeeded", "1", None) is None

    async def test_a_clean_stop_hands_jobs_back(self, ward: Ward, clock: FakeClock) -> None:
        """``release_jobs``: the worker's running jobs are queued again in their place with
        their attempt not charged (``max_attempts=1`` survives a restart), a cancelling
        one is cancelled, the rest are left alone; the rows are those of ``rules.jobs.release``."""
        store = ward.store
        run, stopping, done = await submit(store, "u", 3, attempts=1)
        assert len(await claim(store)) == 3
        (other,) = await submit(store, "v", 1, attempts=1)
        assert await claim(store, worker="w2") == [other.job_id]
        await store.progress_job(run.job_id, "w1", 0.5, "half")
        await store.cancel_job("u", stopping.job_id)
        await store.finish_job(done.job_id, "w1", "succeeded", "1", None)
        before = [await store.get_job("u", j.job_id) for j in (run, stopping)]
        clock.advance(2)
        ids = [done.job_id, stopping.job_id, run.job_id, other.job_id, "nope", run.job_id]
        released = await store.release_jobs("w1", ids)
        assert released == [release(row, clock.now()) for row in before if row is not None]
        assert [(r.status, r.attempts) for r in released] == [("queued", 0), ("cancelled", 1)]
        assert await store.release_jobs("w1", ids) == []  # a repeat changes nothing
        assert await store.release_jobs("w2", [run.job_id]) == []  # not w2's
        finished = await store.get_job("u", done.job_id)
        assert finished is not None and finished.status == "succeeded"
        theirs = await store.get_job("v", other.job_id)
        assert theirs is not None and (theirs.status, theirs.worker_id) == ("running", "w2")
        counts = await store.job_counts()
        assert (counts.running, counts.queued) == (1, 1)
        assert await store.finish_job(run.job_id, "w1", "succeeded", "1", None) is None
        assert await store.heartbeat_jobs("w1", [run.job_id], LEASE) == []
        clock.advance(LEASE)
        # the contrast: a dead worker's job with max_attempts=1 has spent its attempt
        reaped = await store.reap_jobs(limit=10)
        assert [(r.job_id, r.status) for r in reaped] == [(other.job_id, "failed")]
        assert await claim(store, worker="w3") == [run.job_id]
        again = await store.get_job("u", run.job_id)
        assert again is not None and (again.status, again.attempts, again.worker_id) == (
            "running", 1, "w3",
        )  # fmt: skip

    async def test_a_released_job_keeps_its_place(self, ward: Ward) -> None:
        store, one = ward.store, JobLimits(per_user=1, overall=8)
        await submit(store, "a", 3)
        assert await claim(store, limits=one) == ["a-job0"]
        await store.release_jobs("w1", ["a-job0"])
        assert await claim(store, limits=one, worker="w2") == ["a-job0"]  # not a-job1
        await store.release_jobs("w2", ["a-job0"])
        await submit(store, "b", 1)
        # b never started, a did: b goes first; a's released job is still a's head
        assert await claim(store, limits=JobLimits(per_user=1, overall=1)) == ["b-job0"]
        assert await claim(store, limits=JobLimits(per_user=1, overall=2)) == ["a-job0"]

    async def test_a_release_racing_finish_cancel_and_reap_keeps_counts_exact(
        self, ward: Ward, clock: FakeClock
    ) -> None:
        """Every job of a stopping worker is released, finished, cancelled or reaped exactly
        once, whichever comes first; the slot counts stay exact (a full claim afterwards
        gets exactly the waiting jobs, within the limits)."""
        store = ward.store
        for round_ in range(ROUNDS):
            users = [f"r{round_}u{n}" for n in range(4)]
            jobs = [job for user in users for job in await submit(store, user, 2)]
            assert len(await claim(store, worker=f"w{round_}")) == 8
            clock.advance(LEASE)  # every lease has run out: the reaper races too
            ids = [job.job_id for job in jobs]
            contenders: list[Callable[[], Awaitable[object]]] = [
                partial(store.release_jobs, f"w{round_}", ids),
                partial(store.reap_jobs, limit=100),
            ]
            for n, job in enumerate(jobs):
                if n % 2:
                    contenders.append(partial(store.finish_job, job.job_id, f"w{round_}",
                                              "succeeded", "1", None))  # fmt: skip
                else:
                    contenders.append(partial(store.cancel_job, job.user_id, job.job_id))
            for outcome in await race(contenders):
                assert not isinstance(outcome, Exception), outcome
            rows = [await store.get_job(job.user_id, job.job_id) for job in jobs]
            statuses = [r.status for r in rows if r is not None]
            assert len(statuses) == 8 and not {"running", "cancelling"} & set(statuses)
            waiting = sum(s in ("queued", "interrupted") for s in statuses)
            counts = await store.job_counts()
            assert (counts.running, counts.queued) == (0, waiting)
            for row in rows:
                assert row is not None
                assert row.attempts == {"queued": 0, "interrupted": 1}.get(row.status, row.attempts)
            claimed = await claim(store, worker=f"again{round_}")
            assert len(claimed) == waiting
            for job_id in claimed:
                await store.finish_job(job_id, f"again{round_}", "succeeded", "1", None)
            assert (await store.job_counts()).running == 0

    async def test_list_get_isolation_and_purge(self, ward: Ward, clock: FakeClock) -> None:
        store = ward.store
        rows = await submit(store, "u", 3)
        await submit(store, "v", 1)
        assert [r.job_id for r in await store.list_jobs("u", limit=10)] == [
            r.job_id for r in reversed(rows)
        ]
        assert await store.get_job("v", rows[0].job_id) is None
        await store.cancel_job("u", rows[0].job_id)
        clock.advance(100)
        await store.cancel_job("u", rows[1].job_id)
        assert await store.purge_jobs(finished_before=clock.now() - 50, limit=10) == 1
        assert await store.get_job("u", rows[0].job_id) is None
        assert await store.get_job("u", rows[1].job_id) is not None

    async def test_concurrent_claimers_respect_the_limits(self, ward: Ward) -> None:
        for user in range(10):
            await submit(ward.store, f"user{user}", 10)
        claims = await race([partial(claim, ward.store, 3, LIMITS, f"w{n}") for n in range(20)])
        claimed = [job for batch in claims for job in batch]
        assert len(claimed) == len(set(claimed)) == 8
        per_user: dict[str, int] = {}
        for job in claimed:
            user = job.split("-")[0]
            per_user[user] = per_user.get(user, 0) + 1
        assert max(per_user.values()) <= 3


class JobProcessConformance:
    """Claims from four OS processes on one shared store hold the same limits."""

    pytestmark = pytest.mark.anyio

    async def test_claims_from_four_processes(self, store_url: str) -> None:
        async with open_ward(store_url, sweep=False) as ward:
            for user in range(10):
                await submit(ward.store, f"user{user}", 10)
            claimed = await run_in_processes([(_claimer, (store_url, p)) for p in range(4)])
            jobs = [job for batch in claimed for job in batch]
            assert len(jobs) == len(set(jobs)) == 8
            assert (await ward.store.job_counts()).running == 8

    async def test_submits_from_four_processes_fill_the_queue_exactly(self, store_url: str) -> None:
        async with open_ward(store_url, sweep=False) as ward:
            accepted = await run_in_processes([(_submitter, (store_url, p)) for p in range(4)])
            assert sum(accepted) == 20
            assert (await ward.store.job_counts()).queued == 20


async def _submitter(url: str, p: int, barrier: object) -> int:
    """Submit 15 jobs of one user at once, against a queue bound of 20 (60 in all)."""
    async with open_ward(url, sweep=False) as ward:
        news = [NewJob(f"p{p}j{n}", "u", "sleep", "{}", 2) for n in range(15)]
        await anyio.to_thread.run_sync(barrier.wait)  # type: ignore[attr-defined]
        rows = await race([partial(ward.store.submit_job, new, max_queued=20) for new in news])
    return sum(row is not None for row in rows)


async def _claimer(url: str, p: int, barrier: object) -> list[str]:
    async with open_ward(url, sweep=False) as ward:
        await anyio.to_thread.run_sync(barrier.wait)  # type: ignore[attr-defined]
        batches = await race([partial(claim, ward.store, 2, LIMITS, f"p{p}w{n}") for n in range(5)])
    return [job for batch in batches for job in batch]
