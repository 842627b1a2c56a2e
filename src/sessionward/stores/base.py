"""What every backend provides: records, and one capability protocol per manager.

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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ..errors import ConfigurationError
from ..urls import StoreURL

StateKind = Literal["user", "session"]


@dataclass(frozen=True, slots=True)
class SessionRow:
    session_id: str
    user_id: str
    token_hash: str
    created_at: float
    last_seen_at: float
    idle_timeout: float
    idle_expires_at: float
    expires_at: float
    revoked_at: float | None
    ip: str | None
    user_agent: str | None
    metadata: str
    generation: int
    prev_token_hash: str | None = None
    rotated_at: float | None = None

    def is_live(self, now: float) -> bool:
        return self.revoked_at is None and now < self.idle_expires_at


@dataclass(frozen=True, slots=True)
class NewSessionRow:
    """A session to create; the store stamps the times with its own clock."""

    session_id: str
    user_id: str
    token_hash: str
    idle_timeout: float
    absolute_timeout: float
    ip: str | None
    user_agent: str | None
    metadata: str


@dataclass(frozen=True, slots=True)
class ByToken:
    """Find a session by the SHA-256 (hex) of its secret token."""

    token_hash: str


@dataclass(frozen=True, slots=True)
class ById:
    """Find a session by its public id; the owner must match."""

    user_id: str
    session_id: str


SessionKey = ByToken | ById


@dataclass(frozen=True, slots=True)
class Lookup:
    """A session as the store saw it (``None``: no such session), and the store's time."""

    row: SessionRow | None
    now: float


@dataclass(frozen=True, slots=True)
class Created:
    """The new session, or ``None`` when the per-user cap refused it; evicted session ids."""

    row: SessionRow | None
    evicted: tuple[str, ...]


RefreshOutcome = Literal["rotated", "replayed", "reused", "dead", "unknown"]


@dataclass(frozen=True, slots=True)
class Refreshed:
    """What :meth:`SessionStore.refresh_session` did.

    ``rotated``: the presented hash was current; the session now carries the new one.
    ``replayed``: the presented hash was spent by the latest rotation, within ``grace``, and
    that rotation produced the same new hash: nothing changed. ``reused``: the presented hash
    was spent otherwise; the session has been revoked (if it was live). ``dead``: the hash
    is current but the session is not live (``row`` says why). ``unknown``: never issued, or
    its session is gone.
    """

    outcome: RefreshOutcome
    row: SessionRow | None
    now: float


@dataclass(frozen=True, slots=True)
class StateScope:
    """Whose documents: a user's, or one session's. The owner is always part of the key."""

    kind: StateKind
    user_id: str
    session_id: str | None = None

    def __post_init__(self) -> None:
        if (self.kind == "session") != (self.session_id is not None):
            raise ValueError("a session scope needs a session_id; a user scope takes none")


@dataclass(frozen=True, slots=True)
class StateRow:
    data: str
    version: int


@dataclass(frozen=True, slots=True)
class StateWrite:
    """Outcome of a conditional write or delete.

    ``applied``: the write happened. ``version``: the version after the write, or the
    current one (``None`` if absent) when it did not. ``owner_live`` is ``False`` when a
    session scope's session is no longer live, in which case nothing was written.
    """

    applied: bool
    version: int | None
    owner_live: bool = True


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Connections for the capacity monitor: in use, idle, callers waiting, and the cap."""

    in_use: int
    idle: int
    waiting: int
    max_size: int


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

    async def list_sessions(self, user_id: str) -> tuple[list[SessionRow], float]:
        """The user's live sessions, oldest first, and the store's time."""
        ...

    async def sweep_sessions(self, limit: int) -> int:
        """Delete up to ``limit`` dead sessions (and their state); return how many."""
        ...


@dataclass(frozen=True, slots=True)
class NewUserRow:
    user_id: str
    username: str
    username_key: str
    password_hash: str
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UserRow:
    user_id: str
    username: str
    username_key: str
    password_hash: str
    roles: tuple[str, ...]
    disabled: bool
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class UserChange:
    """Fields to change on a user; ``None`` leaves a field as it is. ``expected_hash`` makes
    the change conditional on the current password hash (a rehash must not overwrite a
    password change that raced it)."""

    password_hash: str | None = None
    expected_hash: str | None = None
    disabled: bool | None = None
    roles: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class GcraCheck:
    """One limit of a GCRA decision.

    The key's state is its theoretical arrival time (TAT). With ``base = max(TAT, now)``
    the candidate is ``base + cost * period``, floored at ``now``. The check allows when
    ``candidate - now <= capacity`` (``capacity``: seconds the TAT may run ahead of now), or
    always when ``cost < 0`` (a refund). A ``cost`` of 0 with a ``capacity`` of 0 allows
    exactly when the TAT is not ahead of now: a lock is a key whose TAT is its end.
    """

    key: str
    period: float
    capacity: float
    cost: float


@dataclass(frozen=True, slots=True)
class GcraResult:
    """Per check: allowed, and the candidate TAT (stored only if every check allowed)."""

    allowed: tuple[bool, ...]
    tats: tuple[float, ...]
    now: float


def gcra_candidate(check: GcraCheck, tat: float | None, now: float) -> tuple[bool, float]:
    """The GCRA rule every backend applies (Lua and SQL restate it)."""
    candidate = max(max(tat if tat is not None else now, now) + check.cost * check.period, now)
    return check.cost < 0 or candidate - now <= check.capacity, candidate


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


@dataclass(frozen=True, slots=True)
class BudgetRow:
    """A session's budget (integers in minor units). ``spent`` equals the sum of its ledger;
    ``held`` the sum of its live holds; ``limit - spent - held`` is what may still be spent."""

    user_id: str
    session_id: str
    limit: int
    spent: int
    held: int
    currency: str

    @property
    def remaining(self) -> int:
        return max(self.limit - self.spent - self.held, 0)


@dataclass(frozen=True, slots=True)
class UserBudgetRow:
    """An optional cap across all of a user's sessions. Only the limit is stored: ``spent``
    and ``held`` are always the sums over the user's session budgets (so they cannot drift),
    computed in the same atomic step as the charge that checks them."""

    user_id: str
    limit: int
    spent: int
    held: int

    @property
    def remaining(self) -> int:
        return max(self.limit - self.spent - self.held, 0)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One line of a session's ledger: a charge (positive) or a refund (negative)."""

    entry_id: str
    user_id: str
    session_id: str
    kind: Literal["charge", "refund"]
    amount: int
    idempotency_key: str | None
    description: str
    created_at: float
    refund_of: str | None = None


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    """A charge, or (with ``hold=True``) a reservation, to decide atomically.

    ``default_limit``/``currency`` create the session's budget on first use. For a hold,
    ``entry_id`` is the hold's id and ``hold_ttl`` its lifetime."""

    user_id: str
    session_id: str
    amount: int
    entry_id: str
    idempotency_key: str | None
    description: str
    default_limit: int
    currency: str
    hold_ttl: float = 0.0


BudgetStatus = Literal[
    "charged", "replayed", "exceeded", "user_exceeded", "mismatch", "closed",
    "held", "captured", "released", "refunded", "already", "unknown", "too_much",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class BudgetOutcome:
    """What a ledger operation did. ``entry``: the charge made (or, for ``replayed`` and
    ``mismatch``, the first one; for ``refunded``, the refund). ``budget``/``user_budget``:
    the totals after. ``closed``: the session is not live; nothing happened."""

    status: BudgetStatus
    entry: LedgerEntry | None
    budget: BudgetRow | None
    user_budget: UserBudgetRow | None = None
    hold_id: str | None = None


@dataclass(frozen=True, slots=True)
class LedgerProblem:
    """A budget whose totals disagree with its ledger or holds (``verify_ledger``)."""

    user_id: str
    session_id: str | None
    field: str
    recorded: int
    actual: int


class LedgerStore(Protocol):
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


JobStatus = Literal[
    "queued", "running", "cancelling", "succeeded", "failed", "cancelled", "interrupted"
]
RUNNING: frozenset[str] = frozenset({"running", "cancelling"})  # hold a slot
WAITING: frozenset[str] = frozenset({"queued", "interrupted"})  # may be claimed
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class NewJob:
    job_id: str
    user_id: str
    kind: str
    params: str
    max_attempts: int


@dataclass(frozen=True, slots=True)
class JobRow:
    """A job as stored. ``params``/``result`` are JSON text; ``seq`` orders submissions (FIFO
    within a user). A running job holds a lease (``lease_expires_at``) renewed by its
    worker's heartbeat; ``attempts`` counts claims."""

    job_id: str
    user_id: str
    kind: str
    params: str
    status: JobStatus
    progress: float
    message: str
    result: str | None
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    max_attempts: int
    worker_id: str | None
    lease_expires_at: float | None
    seq: int


def resubmitted(existing: JobRow, new: NewJob) -> JobRow:
    """A submit whose job id is in the store already: the same submission sent again (its
    reply was lost, or it was sent twice at once) finds its job, as it is now; any other
    job's id is refused and nothing is written."""
    same = (existing.user_id, existing.kind, existing.params, existing.max_attempts)
    if same != (new.user_id, new.kind, new.params, new.max_attempts):
        raise ConfigurationError("job id collision")
    return existing


def check_final(status: str) -> None:
    """``finish_job`` ends a job only with a final status."""
    if status not in FINISHED:
        raise ValueError(f"a job ends succeeded, failed or cancelled, not {status}")


@dataclass(frozen=True, slots=True)
class JobLimits:
    """Slots: running (or cancelling) jobs per user and in the whole deployment."""

    per_user: int
    overall: int


@dataclass(frozen=True, slots=True)
class JobCounts:
    running: int
    queued: int


def fair_order(
    queued: Sequence[JobRow], running_by_user: Mapping[str, int], running: int,
    limits: JobLimits, want: int, last_started: Mapping[str, float] | None = None,
) -> list[JobRow]:  # fmt: skip
    """Which queued jobs to start now (the rule every backend applies): while slots are free,
    the next job is the oldest queued job of the user with the fewest running jobs; among
    users with as few, the user served longest ago (whose latest ``started_at`` is oldest;
    a user none of whose jobs ever started first, and one picked in this claim last), then
    the user whose oldest queued job is oldest. FIFO within a user, and the users take
    turns: none waits behind another's whole queue, even when more users wait than there
    are slots. ``queued`` must be ordered by ``seq``; ``last_started`` maps users to the
    latest ``started_at`` of any of their jobs still stored (missing: never started).

    Without ``last_started`` the turns are lost: idle users then go by their oldest queued
    job, and with more waiting users than slots the users holding the oldest jobs keep every
    slot until their queues are empty."""
    heads: dict[str, list[JobRow]] = {}
    for job in queued:
        heads.setdefault(job.user_id, []).append(job)
    busy: dict[str, int] = dict(running_by_user)
    served: dict[str, float] = dict(last_started or {})
    chosen: list[JobRow] = []
    while len(chosen) < want and running + len(chosen) < limits.overall:
        open_users = [u for u, jobs in heads.items() if jobs and busy.get(u, 0) < limits.per_user]
        if not open_users:
            break
        user = min(open_users, key=lambda u: (busy.get(u, 0), served.get(u, -math.inf),
                                              heads[u][0].seq))  # fmt: skip
        chosen.append(heads[user].pop(0))
        busy[user] = busy.get(user, 0) + 1
        served[user] = math.inf  # just now: after everyone served before this claim
    return chosen


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


class Store(SessionStore, StateStore, UserStore, LimitStore, LedgerStore, JobStore, Protocol):
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


def version_matches(current: int | None, expected: int | None) -> bool:
    """The compare-and-set rule every backend applies (``0`` means "must not exist")."""
    if expected is None:
        return True
    if expected == 0:
        return current is None
    return current == expected


def stamp_new_session(new: NewSessionRow, now: float) -> SessionRow:
    expires_at = now + new.absolute_timeout
    return SessionRow(
        session_id=new.session_id,
        user_id=new.user_id,
        token_hash=new.token_hash,
        created_at=now,
        last_seen_at=now,
        idle_timeout=new.idle_timeout,
        idle_expires_at=min(now + new.idle_timeout, expires_at),
        expires_at=expires_at,
        revoked_at=None,
        ip=new.ip,
        user_agent=new.user_agent,
        metadata=new.metadata,
        generation=1,
    )


def charge_refusal(
    budget: BudgetRow, user: UserBudgetRow | None, amount: int
) -> Literal["exceeded", "user_exceeded"] | None:
    """Why ``amount`` may not be spent now (the rule every backend applies), or ``None``."""
    if amount > budget.limit - budget.spent - budget.held:
        return "exceeded"
    if user is not None and amount > user.limit - user.spent - user.held:
        return "user_exceeded"
    return None


def refresh_of_spent(
    row: SessionRow, token_hash: str, new_token_hash: str, grace: float, now: float
) -> RefreshOutcome:
    """For a spent hash: a replay of the latest rotation within grace, else a reuse."""
    replay = (
        row.prev_token_hash == token_hash
        and row.token_hash == new_token_hash
        and row.rotated_at is not None
        and now - row.rotated_at <= grace
        and row.is_live(now)
    )
    return "replayed" if replay else "reused"


def touch_due(row: SessionRow, now: float, touch_interval: float | None) -> bool:
    """Whether a read should move ``last_seen_at`` (live, and the interval has passed)."""
    return (
        touch_interval is not None and row.is_live(now) and now - row.last_seen_at >= touch_interval
    )
