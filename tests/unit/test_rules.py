"""The rules every backend applies, on their own: pure functions, no store, no clock."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sessionward.errors import ConfigurationError
from sessionward.rules.budgets import charge_refusal
from sessionward.rules.jobs import RELEASED, fair_order, queued_row, reap, release, resubmitted
from sessionward.rules.limits import gcra_candidate
from sessionward.rules.sessions import refresh_of_spent, stamp_new_session, touch_due
from sessionward.rules.state import version_matches
from sessionward.stores.records import (
    BudgetRow,
    GcraCheck,
    JobLimits,
    JobRow,
    NewJob,
    NewSessionRow,
    SessionRow,
    UserBudgetRow,
)

NOW = 1_700_000_000.0


# limits


def test_gcra_a_new_key_starts_at_now() -> None:
    assert gcra_candidate(GcraCheck("k", 1.0, 3.0, 1), None, NOW) == (True, NOW + 1)


def test_gcra_admits_the_burst_then_refuses() -> None:
    check = GcraCheck("k", 1.0, 3.0, 1)
    assert gcra_candidate(check, NOW + 2, NOW) == (True, NOW + 3)
    assert gcra_candidate(check, NOW + 3, NOW) == (False, NOW + 4)


def test_gcra_a_past_tat_counts_from_now() -> None:
    assert gcra_candidate(GcraCheck("k", 1.0, 3.0, 1), NOW - 100, NOW) == (True, NOW + 1)


def test_gcra_a_refund_is_always_allowed_and_floored_at_now() -> None:
    assert gcra_candidate(GcraCheck("k", 1.0, 0.0, -5), NOW + 2, NOW) == (True, NOW)


def test_gcra_zero_cost_zero_capacity_is_a_lock() -> None:
    lock = GcraCheck("k", 1.0, 0.0, 0)
    assert gcra_candidate(lock, NOW + 1, NOW)[0] is False
    assert gcra_candidate(lock, NOW, NOW)[0] is True


# jobs


def _job(job_id: str, user: str, seq: int, **changes: object) -> JobRow:
    row = queued_row(NewJob(job_id, user, "sleep", "{}", 2), NOW, seq)
    return replace(row, **changes)  # type: ignore[arg-type]


def _ids(jobs: list[JobRow]) -> list[str]:
    return [job.job_id for job in jobs]


def test_fair_order_is_fifo_within_a_user() -> None:
    queued = [_job(f"a{n}", "alice", n) for n in range(3)]
    assert _ids(fair_order(queued, {}, 0, JobLimits(5, 5), want=3)) == ["a0", "a1", "a2"]


def test_fair_order_users_take_turns() -> None:
    queued = [_job("a0", "alice", 0), _job("a1", "alice", 1), _job("b0", "bob", 2)]
    assert _ids(fair_order(queued, {}, 0, JobLimits(5, 5), want=3)) == ["a0", "b0", "a1"]


def test_fair_order_keeps_the_per_user_limit() -> None:
    queued = [_job(f"a{n}", "alice", n) for n in range(3)] + [_job("b0", "bob", 3)]
    chosen = fair_order(queued, {"alice": 1}, 1, JobLimits(2, 9), want=9)
    assert _ids(chosen) == ["b0", "a0"]


def test_fair_order_keeps_the_overall_limit_and_want() -> None:
    queued = [_job(f"{u}{n}", u, n * 2 + i) for n in range(3) for i, u in enumerate("ab")]
    assert len(fair_order(queued, {}, 3, JobLimits(9, 5), want=9)) == 2
    assert len(fair_order(queued, {}, 0, JobLimits(9, 9), want=1)) == 1
    assert fair_order(queued, {}, 5, JobLimits(9, 5), want=9) == []


def test_fair_order_serves_the_user_served_longest_ago() -> None:
    queued = [_job("a0", "alice", 0), _job("b0", "bob", 1)]
    served = {"alice": NOW, "bob": NOW - 60}
    assert _ids(fair_order(queued, {}, 0, JobLimits(5, 5), 1, served)) == ["b0"]
    assert _ids(fair_order(queued, {}, 0, JobLimits(5, 5), 1, {"alice": NOW})) == ["b0"]


def test_reap_interrupts_a_job_with_attempts_left() -> None:
    job = _job("j", "alice", 0, status="running", attempts=1, worker_id="w", lease_expires_at=NOW)
    reaped = reap(job, NOW + 1)
    assert (reaped.status, reaped.worker_id, reaped.lease_expires_at) == ("interrupted", None, None)
    assert reaped.finished_at is None


def test_reap_fails_a_job_out_of_attempts() -> None:
    job = _job("j", "alice", 0, status="running", attempts=2, worker_id="w")
    reaped = reap(job, NOW + 1)
    assert (reaped.status, reaped.finished_at, reaped.worker_id) == ("failed", NOW + 1, None)
    assert reaped.error


def test_reap_finishes_a_cancelling_job_as_cancelled() -> None:
    job = _job("j", "alice", 0, status="cancelling", attempts=1, worker_id="w")
    reaped = reap(job, NOW + 1)
    assert (reaped.status, reaped.finished_at) == ("cancelled", NOW + 1)


def test_release_queues_a_running_job_without_charging_its_attempt() -> None:
    job = _job("j", "alice", 4, status="running", attempts=1, worker_id="w", lease_expires_at=NOW)
    job = replace(job, progress=0.7, started_at=NOW - 5, max_attempts=1)
    back = release(job, NOW + 1)
    assert (back.status, back.attempts, back.progress, back.message) == ("queued", 0, 0.0, RELEASED)
    assert (back.worker_id, back.lease_expires_at, back.finished_at) == (None, None, None)
    assert (back.seq, back.started_at) == (4, NOW - 5)  # its place, and its user's turn


def test_release_finishes_a_cancelling_job_as_cancelled() -> None:
    job = _job("j", "alice", 0, status="cancelling", attempts=1, worker_id="w")
    back = release(job, NOW + 1)
    assert (back.status, back.finished_at, back.attempts, back.worker_id) == (
        "cancelled", NOW + 1, 1, None,
    )  # fmt: skip


def test_resubmitted_finds_the_same_job_and_refuses_another() -> None:
    existing = _job("j", "alice", 0, status="running")
    assert resubmitted(existing, NewJob("j", "alice", "sleep", "{}", 2)) is existing
    with pytest.raises(ConfigurationError, match="job id collision"):
        resubmitted(existing, NewJob("j", "bob", "sleep", "{}", 2))
    with pytest.raises(ConfigurationError, match="job id collision"):
        resubmitted(existing, NewJob("j", "alice", "sleep", '{"a": 1}', 2))


# budgets


def test_charge_refusal() -> None:
    budget = BudgetRow("alice", "s", limit=100, spent=60, held=30, currency="credits")
    assert charge_refusal(budget, None, 10) is None
    assert charge_refusal(budget, None, 11) == "exceeded"
    user = UserBudgetRow("alice", limit=200, spent=150, held=45)
    assert charge_refusal(budget, user, 5) is None
    assert charge_refusal(replace(budget, limit=1000), user, 6) == "user_exceeded"
    assert charge_refusal(budget, user, 11) == "exceeded"  # the session's budget first


# state


@pytest.mark.parametrize(
    ("current", "expected", "matches"),
    [
        (None, None, True), (3, None, True),
        (None, 0, True), (1, 0, False),
        (3, 3, True), (3, 2, False), (None, 1, False),
    ],
)  # fmt: skip
def test_version_matches(current: int | None, expected: int | None, matches: bool) -> None:
    assert version_matches(current, expected) is matches


# sessions


def _session(**changes: object) -> SessionRow:
    new = NewSessionRow("sid", "alice", "t0", 600.0, 3600.0, None, None, "{}")
    return replace(stamp_new_session(new, NOW), **changes)  # type: ignore[arg-type]


def test_stamp_new_session_caps_idle_at_the_absolute_end() -> None:
    row = stamp_new_session(NewSessionRow("s", "u", "t", 600.0, 60.0, None, None, "{}"), NOW)
    assert (row.idle_expires_at, row.expires_at, row.generation) == (NOW + 60, NOW + 60, 1)


def test_touch_due() -> None:
    row = _session()
    assert not touch_due(row, NOW + 59, 60.0)
    assert touch_due(row, NOW + 60, 60.0)
    assert not touch_due(row, NOW + 60, None)  # touching off
    assert not touch_due(row, NOW + 600, 60.0)  # idle-expired: not live
    assert not touch_due(_session(revoked_at=NOW), NOW + 60, 60.0)


def test_refresh_of_spent_replays_only_the_latest_rotation_within_grace() -> None:
    row = _session(token_hash="t1", prev_token_hash="t0", rotated_at=NOW)
    assert refresh_of_spent(row, "t0", "t1", grace=10, now=NOW + 10) == "replayed"
    assert refresh_of_spent(row, "t0", "t1", grace=10, now=NOW + 10.001) == "reused"
    assert refresh_of_spent(row, "t0", "t2", grace=10, now=NOW + 1) == "reused"
    assert refresh_of_spent(row, "tX", "t1", grace=10, now=NOW + 1) == "reused"
    revoked = replace(row, revoked_at=NOW)
    assert refresh_of_spent(revoked, "t0", "t1", grace=10, now=NOW + 1) == "reused"
