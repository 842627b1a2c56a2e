"""What every backend provides: one capability protocol per manager.

A store holds data and makes each operation atomic; it never decides policy. Times are
seconds since the epoch, taken from the store's own clock (the server's on Redis and
PostgreSQL, the injected :class:`~sessionward.clock.Clock` on memory and SQLite), and every
read that a manager must judge comes back with that ``now`` so that judgement uses the same
clock as the write.

A session is *live* while ``revoked_at is None and now < idle_expires_at``;
``idle_expires_at`` never passes ``expires_at``. Dead rows (expired or revoked) stay as
tombstones until ``idle_expires_at``, then any sweep may delete them; no write ever brings
one back, because every write to a session, or to its state, is conditional on it being live.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..urls import StoreURL
from .records import (
    ActiveCounts,
    BudgetOutcome,
    BudgetRow,
    ById,
    ChargeRequest,
    Created,
    GcraCheck,
    GcraResult,
    InstanceRow,
    JobCounts,
    JobLimits,
    JobRow,
    JobStatus,
    LedgerEntry,
    LedgerProblem,
    Lookup,
    NewJob,
    NewSessionRow,
    NewUserRow,
    PoolStats,
    Refreshed,
    SessionKey,
    SessionRow,
    StateRow,
    StateScope,
    StateWrite,
    UserBudgetRow,
    UserChange,
    UserRow,
)


class SessionStore(Protocol):
    async def create_session(
        self, new: NewSessionRow, *, max_sessions: int, evict_oldest: bool
    ) -> Created: ...

    async def find_session(self, key: SessionKey, *, touch_interval: float | None) -> Lookup:
        """Read a session; if live and ``touch_interval`` has passed since ``last_seen_at``,
        move ``last_seen_at`` to now and extend ``idle_expires_at`` (capped at ``expires_at``).
        ``None`` never touches."""
        ...

    async def rotate_session(self, key: SessionKey, new_token_hash: str) -> Lookup:
        """If live: replace the token hash, bump ``generation`` and touch; the old hash
        becomes ``prev_token_hash`` and is remembered as spent (see :meth:`refresh_session`).
        The returned row carries ``new_token_hash`` exactly when the rotation happened."""
        ...

    async def refresh_session(
        self, token_hash: str, new_token_hash: str, *, grace: float
    ) -> Refreshed:
        """Rotate by a presented token, with reuse detection; see :class:`Refreshed`.

        Every hash a session has carried stays known as spent until the session is gone.
        A spent hash presented again within ``grace`` seconds of the rotation that spent it,
        naming the same ``new_token_hash``, is a replay; any other spent hash revokes."""
        ...

    async def revoke_session(self, key: ById) -> bool:
        """Mark a live session revoked and delete its state; ``False`` if it was not live."""
        ...

    async def revoke_user_sessions(self, user_id: str, *, keep: str | None = None) -> int: ...

    async def find_session_owner(self, session_id: str) -> str | None:
        """The user a session id belongs to (an administrator's lookup: the CLI's ``sessions
        revoke ID``), by an index on the id, never a walk over the users; ``None`` if no
        such session is stored. A session's owner never changes; a session that has ended
        may still be named until it is swept (Redis: until its absolute end)."""
        ...

    async def list_sessions(self, user_id: str) -> tuple[list[SessionRow], float]:
        """The user's live sessions, oldest first, and the store's time."""
        ...

    async def sweep_sessions(self, limit: int) -> int:
        """Delete up to ``limit`` dead sessions (and their state); return how many."""
        ...


class UserStore(Protocol):
    async def create_user(self, new: NewUserRow) -> UserRow | None:
        """Create a user; ``None`` if ``username_key`` (or ``user_id``) is taken, decided
        atomically."""
        ...

    async def get_user(self, user_id: str) -> UserRow | None: ...

    async def find_user(self, username_key: str) -> UserRow | None: ...

    async def list_users(self, *, after: str | None, limit: int) -> list[UserRow]:
        """Up to ``limit`` (>= 1) users ordered by ``username_key``, after ``after``."""
        ...

    async def update_user(self, user_id: str, change: UserChange) -> UserRow | None:
        """Apply ``change``; ``None`` if there is no such user or ``expected_hash`` differs."""
        ...


class LimitStore(Protocol):
    async def gcra(self, checks: Sequence[GcraCheck], *, apply: bool = True) -> GcraResult:
        """Decide every check against its key's TAT in one atomic step; if all allow and
        ``apply``, store every candidate TAT (a key whose TAT is not ahead of now is the
        same as an absent key, and may be deleted or left to expire)."""
        ...

    async def reset_limits(self, keys: Sequence[str]) -> None: ...

    async def sweep_limits(self, limit: int) -> int:
        """Delete up to ``limit`` keys whose TAT has passed; Redis leaves it to TTLs."""
        ...


class BudgetStore(Protocol):
    """Budgets, ledgers and holds. Every operation that moves money is one atomic step that
    checks the session is live, the session's and (if set) the user's budget, the
    idempotency key, and writes the ledger line and the totals together."""

    async def get_budget(
        self, user_id: str, session_id: str, *, default_limit: int, currency: str
    ) -> BudgetRow: ...

    async def set_budget(
        self, user_id: str, session_id: str, *, limit: int, currency: str
    ) -> BudgetRow | None:
        """Set a session's limit; ``None`` (nothing changed) if below spent + held."""
        ...

    async def get_user_budget(self, user_id: str) -> UserBudgetRow | None: ...

    async def set_user_budget(self, user_id: str, limit: int | None) -> UserBudgetRow | None:
        """Set (or with ``None`` remove) the user's cap; ``None`` if below spent + held."""
        ...

    async def charge(self, request: ChargeRequest) -> BudgetOutcome:
        """``charged``, ``replayed`` (same key and amount), ``mismatch`` (same key, another
        amount), ``exceeded`` / ``user_exceeded`` (nothing charged) or ``closed``."""
        ...

    async def refund(
        self, user_id: str, session_id: str, charge_id: str, refund_id: str
    ) -> BudgetOutcome:
        """``refunded`` (once), ``already`` or ``unknown``."""
        ...

    async def reserve(self, request: ChargeRequest) -> BudgetOutcome:
        """``held`` (counts against the budget until captured, released or expired),
        ``exceeded`` / ``user_exceeded`` or ``closed``."""
        ...

    async def capture(
        self, user_id: str, session_id: str, hold_id: str, actual: int, entry_id: str,
        description: str,
    ) -> BudgetOutcome:  # fmt: skip
        """Charge ``actual`` (at most the hold) and release the hold: ``captured``,
        ``too_much`` or ``unknown`` (no such hold, or expired)."""
        ...

    async def release(self, user_id: str, session_id: str, hold_id: str) -> BudgetOutcome:
        """``released`` or ``unknown``."""
        ...

    async def list_charges(
        self, user_id: str, session_id: str, *, after: str | None, limit: int
    ) -> list[LedgerEntry]:
        """Ledger lines oldest first, after the entry ``after``."""
        ...

    async def sweep_holds(self, limit: int) -> int:
        """Release up to ``limit`` expired holds; return how many."""
        ...

    async def verify_ledger(self) -> list[LedgerProblem]:
        """Every budget whose totals disagree with its ledger and holds (empty: all agree)."""
        ...


class JobStore(Protocol):
    """Per-user job queues with slot limits decided atomically across all instances."""

    async def submit_job(self, new: NewJob, *, max_queued: int) -> JobRow | None:
        """Queue a job; ``None`` if the user already has ``max_queued`` waiting jobs. A job
        id already stored: the same submission again returns its job, as it is now; another
        job's id raises ``ConfigurationError`` (:func:`resubmitted`)."""
        ...

    async def claim_jobs(
        self, worker_id: str, *, want: int, limits: JobLimits, lease: float
    ) -> list[JobRow]:
        """Atomically start up to ``want`` waiting (``queued`` or ``interrupted``) jobs by
        :func:`fair_order`, counting every running or cancelling job in the store against
        ``limits``: status ``running``, ``attempts + 1``, ``started_at``, the lease, the
        worker."""
        ...

    async def heartbeat_jobs(
        self, worker_id: str, job_ids: Sequence[str], lease: float
    ) -> list[str]:
        """Extend the leases of this worker's jobs; return those now ``cancelling``."""
        ...

    async def progress_job(
        self, job_id: str, worker_id: str, progress: float, message: str
    ) -> JobStatus | None:
        """Record progress (never decreasing) of a job this worker holds; return its status
        (``None``: not this worker's any more)."""
        ...

    async def finish_job(
        self, job_id: str, worker_id: str, status: JobStatus, result: str | None, error: str | None,
    ) -> JobRow | None:  # fmt: skip
        """End a job this worker holds (``succeeded`` sets progress 1; a job being cancelled
        ends ``cancelled`` whatever is asked); frees its slot. ``None`` if not held. A status
        that is not final raises ``ValueError`` (:func:`check_final`)."""
        ...

    async def cancel_job(self, user_id: str, job_id: str) -> JobRow | None:
        """A queued job becomes ``cancelled`` at once, a running one ``cancelling``; others
        are left as they are. ``None`` if the user has no such job."""
        ...

    async def get_job(self, user_id: str, job_id: str) -> JobRow | None: ...

    async def list_jobs(self, user_id: str, *, limit: int) -> list[JobRow]:
        """The user's jobs, newest first."""
        ...

    async def reap_jobs(self, *, limit: int) -> list[JobRow]:
        """Jobs whose lease expired (their worker died): a ``cancelling`` one becomes
        ``cancelled``; a ``running`` one ``interrupted`` if attempts remain (claimable again,
        in its place in the queue: that is its re-queueing), else ``failed``. Frees their
        slots; returns them as they end up."""
        ...

    async def release_jobs(self, worker_id: str, job_ids: Sequence[str]) -> list[JobRow]:
        """Hand back the given jobs this worker holds (its clean stop), by :func:`release`:
        a ``running`` one is ``queued`` again in its place with its attempt not charged, a
        ``cancelling`` one ``cancelled``. Frees their slots in the same step. Jobs not held
        by this worker (finished, reaped, another's) are left as they are. Returns the
        released jobs as they end up, by ``seq``."""
        ...

    async def purge_jobs(self, *, finished_before: float, limit: int) -> int:
        """Delete up to ``limit`` jobs that finished before ``finished_before``, the oldest
        finished first (ties by ``seq``)."""
        ...

    async def job_counts(self) -> JobCounts: ...


class StateStore(Protocol):
    """Documents per scope. A session scope whose session is not live reads as empty
    (``None``, ``[]``) even before a sweep deletes it, and refuses writes and deletes
    (``owner_live=False``)."""

    async def get_state(self, scope: StateScope, name: str) -> StateRow | None: ...

    async def put_state(
        self, scope: StateScope, name: str, data: str, *, expected_version: int | None
    ) -> StateWrite:
        """Write ``data``. ``expected_version``: ``None`` overwrites, ``0`` creates only,
        ``n`` writes only over version ``n``. A new document gets version 1."""
        ...

    async def delete_state(
        self, scope: StateScope, name: str, *, expected_version: int | None
    ) -> StateWrite: ...

    async def list_state(self, scope: StateScope) -> list[str]: ...


class CapacityStore(Protocol):
    """What the capacity monitor reads and shares: the deployment's activity, and each
    instance's latest sample under a short TTL."""

    async def count_active(self, window: float) -> ActiveCounts:
        """Live sessions whose ``last_seen_at`` is within ``window`` seconds of the store's
        now, and their distinct users."""
        ...

    async def publish_instance(self, instance_id: str, data: str, *, ttl: float) -> None:
        """Replace the instance's sample; it lists until ``ttl`` seconds from now."""
        ...

    async def list_instances(self) -> list[InstanceRow]:
        """The samples not yet expired, by instance id."""
        ...


class Store(
    SessionStore, StateStore, UserStore, LimitStore, BudgetStore, JobStore, CapacityStore, Protocol
):
    """A backend: open it, use it, close it."""

    url: StoreURL

    @property
    def backend(self) -> str: ...

    async def open(self) -> None:
        """Connect, create or migrate the schema, load scripts. Idempotent across processes."""
        ...

    async def aclose(self) -> None: ...

    async def ping(self) -> float:
        """One round trip to the store; returns its latency in seconds."""
        ...

    async def server_version(self) -> str: ...

    def pool_stats(self) -> PoolStats: ...
