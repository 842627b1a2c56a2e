"""The records every backend stores and returns: frozen dataclasses, no behaviour beyond
a liveness test. See :mod:`sessionward.stores.protocols` for what a backend does with them.
Token and password hashes are left out of every repr, so a logged record shows neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

StateKind = Literal["user", "session"]


@dataclass(frozen=True, slots=True)
class SessionRow:
    session_id: str
    user_id: str
    token_hash: str = field(repr=False)
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
    prev_token_hash: str | None = field(default=None, repr=False)
    rotated_at: float | None = None

    def is_live(self, now: float) -> bool:
        return self.revoked_at is None and now < self.idle_expires_at


@dataclass(frozen=True, slots=True)
class NewSessionRow:
    """A session to create; the store stamps the times with its own clock."""

    session_id: str
    user_id: str
    token_hash: str = field(repr=False)
    idle_timeout: float
    absolute_timeout: float
    ip: str | None
    user_agent: str | None
    metadata: str


@dataclass(frozen=True, slots=True)
class ByToken:
    """Find a session by the SHA-256 (hex) of its secret token."""

    token_hash: str = field(repr=False)


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
    """Connections for the capacity monitor: in use, idle, callers waiting, the cap, and
    the seconds callers have waited for a connection since the store opened (0 where the
    driver does not say)."""

    in_use: int
    idle: int
    waiting: int
    max_size: int
    wait_time: float = 0.0


@dataclass(frozen=True, slots=True)
class ActiveCounts:
    """Live sessions seen within a window, the distinct users holding them, and the store's
    time of the count."""

    sessions: int
    users: int
    now: float


@dataclass(frozen=True, slots=True)
class InstanceRow:
    """One instance's latest published capacity sample (JSON), until ``expires_at``."""

    instance_id: str
    data: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class NewUserRow:
    user_id: str
    username: str
    username_key: str
    password_hash: str = field(repr=False)
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UserRow:
    user_id: str
    username: str
    username_key: str
    password_hash: str = field(repr=False)
    roles: tuple[str, ...]
    disabled: bool
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class UserChange:
    """Fields to change on a user; ``None`` leaves a field as it is. ``expected_hash`` makes
    the change conditional on the current password hash (a rehash must not overwrite a
    password change that raced it)."""

    password_hash: str | None = field(default=None, repr=False)
    expected_hash: str | None = field(default=None, repr=False)
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


@dataclass(frozen=True, slots=True)
class JobLimits:
    """Slots: running (or cancelling) jobs per user and in the whole deployment."""

    per_user: int
    overall: int


@dataclass(frozen=True, slots=True)
class JobCounts:
    running: int
    queued: int
