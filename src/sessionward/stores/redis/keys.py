"""Key layout of the Redis store, and the conversions between rows and script replies.

    P:{u:U}:s:S     STRING  session S of user U: a JSON object of :data:`FIELDS`
    P:{u:U}:idx     ZSET    U's (encoded) session ids by created_at: list, cap, revoke-all
    P:{u:U}:us      HASH    U's documents: ``d:<name>`` the data, ``v:<name>`` the version
    P:{u:U}:ss:S    HASH    session S's documents, same fields; expires with S
    P:{u:U}:sp:S    SET     every token hash S carried before its current one; expires with S
    P:t:H           STRING  route from token hash H to its session: JSON ``[U, S]``
    P:{u:U}:user    STRING  user U: a JSON object (lua/user_create.lua); no TTL
    P:{u:U}:user:unclaimed  STRING  present until U's username claim is known to have
                    landed; meanwhile U is visible only through the username index
    P:{usernames}   HASH    username_key to user id: the uniqueness point; no TTL
    P:{usernames}:sorted  ZSET  username_keys, score 0, for ordered pages; no TTL
    P:rl:K          STRING  GCRA limiter K's TAT (``%.17g``); expires at that TAT
                    (``P:{rl}:K`` on Redis Cluster: see below)
    P:{u:U}:b:S     HASH    session S's budget: ``lim``, ``sp``, ``hd``, ``cur``; ``e:<entry>``
                    the entry's stream id, ``r:<charge>`` its refund, ``h:<hold>`` the amount
    P:{u:U}:l:S     STREAM  S's ledger, oldest first (lua/budget_prelude.lua)
    P:{u:U}:h:S     ZSET    S's hold ids by expires_at
    P:{u:U}:ik:S    HASH    S's idempotency keys: key to entry id
    P:{u:U}:bidx    SET     U's members with a budget: the user's sums run over it
    P:{u:U}:bcap    STRING  U's cap across its sessions (only the cap: the sums are taken
                    over the budgets by every script that needs them); no TTL
    P:{jobs}:j:J    HASH    job J (fields in lua/job_prelude.lua); no TTL, deleted by a purge
    P:{jobs}:q:U    ZSET    U's waiting (queued or interrupted) job ids by seq
    P:{jobs}:a:U    ZSET    all of U's job ids by seq, for listing
    P:{jobs}:s:U    ZSET    U's job ids that ever started, by started_at: the top is when U
                    was last served (``fair_order``'s ``last_started``)
    P:{jobs}:ready  SET     users with waiting jobs
    P:{jobs}:busy   HASH    user to running (or cancelling) jobs; no field at 0
    P:{jobs}:leases ZSET    running (or cancelling) job ids by lease_expires_at
    P:{jobs}:done   ZSET    finished job ids by finished_at, for purging
    P:{jobs}:waiting  STRING  the number of waiting jobs
    P:{jobs}:seq    STRING  the last seq handed out
    P:{jobs}:gm     HASH    sharded queues: gate member to the running job that holds it
    P:{jobs:gate}   ZSET    sharded queues: the global slots held, by reserved_at
    P:jr:J          STRING  sharded queues: job J's shard; no TTL, deleted by a purge
    P:{act}:s       ZSET    ``U:S`` (encoded ids) by last_seen_at, for the activity counts;
                    written after a create or touch, trimmed when counted (:mod:`.capacity`)
    P:{inst}        HASH    instance id to its latest capacity sample (JSON)
    P:{inst}:exp    ZSET    instance ids by the time their sample expires

``P`` is the ``key_prefix`` option. One user's keys share the hash tag ``{u:U}``, so they
live in one Redis Cluster slot and one script may touch them together (scripts that walk the
index build its members' keys from ``P:{u:U}:``: undeclared, but in the declared keys' slot).
A route lives in another slot, so it is written by its own command, never from a script. A
route outlives the rotation that spends its hash (it expires at the session's
``expires_at``), so that a spent hash still leads to its session; only the session's spent
set says whether the session really carried it. The two username keys share the tag
``{usernames}``, so a claim adds to both at once. A user's record is in the user's slot, so
registration is three crash-safe steps: the record with its unclaimed mark, the claim, then
the mark's deletion (see :mod:`.users`). Limiter keys are in a slot each on one server; on
Redis Cluster they share the tag ``{rl}``, because one decision may span any keys (a login's
account and address limits) and must stay all or none: their slot's shard takes every
decision (measured locally about 20k script calls/s per shard).

Every job key shares the one hash tag ``{jobs}``: a claim decides the per-user and overall
slot limits over the queues of all users at once, so they must all be in one slot (one
script, and the layout still works on Redis Cluster, where that slot is one shard). The
queues, the running counts and the indexes change in the same script as the job's status,
so they never drift (the invariants are listed in ``lua/job_prelude.lua``). With the
``job_shards=N`` option (N > 1) the job keys are split over the tags ``{jobs:0}`` ..
``{jobs:N-1}``, a user's on one of them, and the overall limit is held by a gate in a slot
of its own (:mod:`.jobs_sharded`).

A session's budget, ledger and holds expire with the session (every ledger script and every
touch extends them to the session key's TTL, or a day when there is no session key), its
idempotency keys at least a day, and a sweep deletes them all with the session; the budget
index lives as long as its longest-lived budget. All of them are in the user's slot, so one
script decides a charge against the session's budget and the user's cap together.

An id made only of ``[A-Za-z0-9_.@-]`` appears as it is; any other id (including one
holding ``{``, ``}``, ``:`` or ``~``) appears as ``~`` and the unpadded urlsafe base64 of
its UTF-8. Neither form holds a brace or a colon, so an id can never end the hash tag
early, and the two forms cannot collide because only the second starts with ``~``.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from ..records import SessionRow, StateScope, StateWrite, UserRow

_PLAIN = re.compile(r"[A-Za-z0-9_.@-]+")

Owner = tuple[str, str]


def encode_id(value: str) -> str:
    if _PLAIN.fullmatch(value):
        return value
    return "~" + base64.urlsafe_b64encode(value.encode()).rstrip(b"=").decode("ascii")


def decode_id(part: str) -> str:
    if not part.startswith("~"):
        return part
    raw = part[1:]
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()


class KeyLayout:
    """The keys of one ``key_prefix``."""

    def __init__(self, prefix: str, *, cluster: bool = False) -> None:
        self.prefix = prefix
        self._limits = f"{prefix}:{{rl}}:" if cluster else f"{prefix}:rl:"

    def user(self, user_id: str) -> str:
        """The common start of a user's keys (the scripts append ``s:<member>`` etc.)."""
        return f"{self.prefix}:{{u:{encode_id(user_id)}}}:"

    def index(self, user_id: str) -> str:
        return f"{self.user(user_id)}idx"

    def session_key(self, user_id: str, session_id: str) -> str:
        return f"{self.user(user_id)}s:{encode_id(session_id)}"

    def session(self, user_id: str, session_id: str) -> list[str]:
        """The session, its documents, the user's index and the session's spent token
        hashes: the keys of a session script."""
        base, member = self.user(user_id), encode_id(session_id)
        return [f"{base}s:{member}", f"{base}ss:{member}", f"{base}idx", f"{base}sp:{member}"]

    def documents(self, scope: StateScope) -> list[str]:
        """The documents hash, then (for a session scope) the session that owns it."""
        base = self.user(scope.user_id)
        if scope.session_id is None:
            return [f"{base}us"]
        member = encode_id(scope.session_id)
        return [f"{base}ss:{member}", f"{base}s:{member}"]

    def owner(self, session_id: str) -> str:
        """A session id's owner (its user id), for a lookup by id alone."""
        return self.owner_of_member(encode_id(session_id))

    def owner_of_member(self, member: str) -> str:
        """:meth:`owner` of an encoded session id (a member of a user's index)."""
        return f"{self.prefix}:i:{member}"

    def route(self, token_hash: str) -> str:
        return f"{self.prefix}:t:{encode_id(token_hash)}"

    def account(self, user_id: str) -> list[str]:
        """A user's record and its unclaimed mark."""
        base = self.user(user_id)
        return [f"{base}user", f"{base}user:unclaimed"]

    def usernames(self) -> list[str]:
        """The username index and its sorted companion (one hash tag)."""
        return [f"{self.prefix}:{{usernames}}", f"{self.prefix}:{{usernames}}:sorted"]

    def activity(self) -> str:
        return f"{self.prefix}:{{act}}:s"

    def activity_member(self, user_id: str, session_id: str) -> str:
        return f"{encode_id(user_id)}:{encode_id(session_id)}"

    def session_of_member(self, member: str) -> str:
        user, _, session = member.partition(":")
        return f"{self.prefix}:{{u:{user}}}:s:{session}"

    def instances(self) -> list[str]:
        return [f"{self.prefix}:{{inst}}", f"{self.prefix}:{{inst}}:exp"]

    def limit(self, key: str) -> str:
        return f"{self._limits}{encode_id(key)}"

    def budget(self, user_id: str, session_id: str) -> list[str]:
        """The session's budget, the session, its ledger, holds and idempotency keys, then the
        user's budget index and cap: the keys of a ledger script."""
        base, member = self.user(user_id), encode_id(session_id)
        own = [f"{base}{kind}:{member}" for kind in ("b", "s", "l", "h", "ik")]
        return [*own, *self.user_budget(user_id)]

    def user_budget(self, user_id: str) -> list[str]:
        """The user's budget index and cap."""
        base = self.user(user_id)
        return [f"{base}bidx", f"{base}bcap"]

    def budget_pattern(self, kind: str) -> str:
        """A SCAN pattern for every session's key of one kind (``b``, ``h``, ...)."""
        return f"{self.prefix}:{{u:*}}:{kind}:*"

    def jobs(self, shard: int | None = None) -> str:
        """The common start of every job key (the scripts append ``j:<job>`` etc.); of one
        shard ``{jobs:<n>}`` of sharded queues."""
        tag = "jobs" if shard is None else f"jobs:{shard}"
        return f"{self.prefix}:{{{tag}}}:"

    def job_shared(self, shard: int | None = None) -> list[str]:
        """The keys every job script declares (``KEYS`` in lua/job_prelude.lua)."""
        base = self.jobs(shard)
        return [f"{base}{name}" for name in ("seq", "ready", "busy", "leases", "done", "waiting")]

    def job(self, job_id: str, shard: int | None = None) -> str:
        return f"{self.jobs(shard)}j:{encode_id(job_id)}"

    def job_gate(self) -> str:
        """Sharded queues: the ZSET of the global slots held (lua/job_gate.lua)."""
        return f"{self.prefix}:{{jobs:gate}}"

    def job_route(self, job_id: str) -> str:
        """Sharded queues: job id to the shard that holds the job (and the id's claim)."""
        return f"{self.prefix}:jr:{encode_id(job_id)}"

    def owner_of(self, key: str) -> Owner | None:
        """(user, session) of a session's key (``P:{u:U}:<kind>:S``), or ``None``."""
        head = f"{self.prefix}:{{u:"
        user, sep, rest = key.removeprefix(head).partition("}:")
        if not key.startswith(head) or not sep or rest.count(":") != 1:
            return None
        return decode_id(user), decode_id(rest.partition(":")[2])


class RouteCache:
    """Token hash to (user, session), bounded, least recently used out first.

    A token hash belongs to one session for good, so an entry never needs refreshing: at
    worst it names a session that is gone or no longer carries that hash, and the session
    script refuses both. Only routes that exist are cached, so unknown tokens cannot fill it.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, Owner] = OrderedDict()

    def get(self, token_hash: str) -> Owner | None:
        owner = self._entries.get(token_hash)
        if owner is not None:
            self._entries.move_to_end(token_hash)
        return owner

    def put(self, token_hash: str, owner: Owner) -> None:
        if self._size == 0:
            return
        self._entries[token_hash] = owner
        self._entries.move_to_end(token_hash)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def forget(self, token_hash: str) -> None:
        self._entries.pop(token_hash, None)

    def __len__(self) -> int:
        return len(self._entries)


def route_value(owner: Owner) -> str:
    return json.dumps(list(owner), ensure_ascii=False)


def parse_route(value: str | None) -> Owner | None:
    if value is None:
        return None
    try:
        owner = json.loads(value)
    except ValueError:
        return None  # not ours: treat as no route rather than fail every lookup
    if isinstance(owner, list) and len(owner) == 2 and all(isinstance(p, str) for p in owner):
        return owner[0], owner[1]
    return None


def ttl_ms(at: float, now: float) -> int:
    """Like the scripts' ``ttl_ms``: relative to ``now``, and never below 1 ms."""
    return max(1, math.ceil((at - now) * 1000))


def time_arg(now: float | None) -> str:
    """A time for a script: exact (``repr`` round-trips a float), or '' for the server's."""
    return "" if now is None else repr(float(now))


def version_arg(expected: int | None) -> str:
    return "" if expected is None else str(expected)


def optional(value: str | None) -> str:
    """An optional string for a script: '' for ``None``, so that '' itself survives."""
    return "" if value is None else "+" + value


#: The session object's fields, in the order of every row a script returns (``FIELDS`` in
#: lua/prelude.lua); ``n`` orders sessions created within one clock tick; ``pt`` and ``rt``
#: (prev_token_hash, rotated_at) are absent until the first rotation.
FIELDS = (
    "sid", "uid", "th", "ca", "ls", "it", "ie", "ea", "ra", "ip", "ua", "md", "g", "n", "pt", "rt",
)  # fmt: skip


def row_from_json(text: str | bytes) -> SessionRow:
    """A row from a session key's value: a JSON object keyed by the short field names."""
    fields = json.loads(text)
    return session_row([fields.get(name) for name in FIELDS])


def session_row(values: Sequence[Any]) -> SessionRow:
    """A row from a script's reply: FIELDS order, ``None`` for an absent field."""
    sid, uid, th, ca, ls, it, ie, ea, ra, ip, ua, md, g, _, pt, rt = values
    return SessionRow(
        session_id=sid,
        user_id=uid,
        token_hash=th,
        created_at=float(ca),
        last_seen_at=float(ls),
        idle_timeout=float(it),
        idle_expires_at=float(ie),
        expires_at=float(ea),
        revoked_at=None if ra is None else float(ra),
        ip=ip,
        user_agent=ua,
        metadata=md,
        generation=int(g),
        prev_token_hash=pt,
        rotated_at=None if rt is None else float(rt),
    )


def state_write(reply: Sequence[int]) -> StateWrite:
    applied, version, owner_live = reply
    return StateWrite(applied == 1, None if version < 0 else version, owner_live == 1)


def user_from_json(text: str | bytes) -> UserRow:
    """A user from its record (the JSON object lua/user_create.lua writes)."""
    fields = json.loads(text)
    return UserRow(
        user_id=fields["id"],
        username=fields["un"],
        username_key=fields["uk"],
        password_hash=fields["ph"],
        roles=tuple(json.loads(fields["ro"])),
        disabled=bool(fields["dis"]),
        created_at=float(fields["ca"]),
        updated_at=float(fields["ua"]),
    )


def roles_json(roles: Sequence[str]) -> str:
    return json.dumps(list(roles), ensure_ascii=False)
