"""In-process store: one lock, bounded by an LRU cap, for tests and single-process apps.

Every operation runs entirely under one ``threading.Lock``, so each is atomic against other
threads and tasks. The store counts sessions and state documents together and, past
``max_entries``, drops the least recently used, so a flood of new keys cannot grow it without
bound. It belongs to the process that created it: used after a ``fork`` it refuses, because
the copy would silently diverge from the original.

Its rate-limit decisions never wait, so it also decides them synchronously (``gcra_now``,
``gcra_one_now``): :class:`~sessionward.SyncWard` threads call them directly, under the same
lock, instead of through its event loop.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from ..clock import Clock, SystemClock
from ..errors import ConfigurationError
from ..rules.sessions import refresh_of_spent, stamp_new_session, touch_due
from ..rules.state import version_matches
from ..urls import MemoryOptions, StoreURL
from .memory_accounts import MemoryAccounts
from .memory_jobs import MemoryJobs
from .memory_ledger import MemoryLedger
from .records import (
    ById,
    ByToken,
    Created,
    Lookup,
    NewSessionRow,
    PoolStats,
    Refreshed,
    SessionKey,
    SessionRow,
    StateRow,
    StateScope,
    StateWrite,
)

T = TypeVar("T")
_ScopeKey = tuple[str, str, str]
#: an LRU entry: ("s", session id), (kind, user id, session id, name) for a state document,
#: or a limiter key itself (a str: the commonest entry, made at no cost)
_Entry = tuple[str, ...] | str


def _scope_key(scope: StateScope) -> _ScopeKey:
    return (scope.kind, scope.user_id, scope.session_id or "")


#: this process's stores. A forked child marks its copies inherited: checked per operation for
#: nothing, where comparing os.getpid() costs a system call each time.
_STORES: weakref.WeakSet[MemoryStore] = weakref.WeakSet()


def _mark_inherited() -> None:
    for store in list(_STORES):
        store._inherited = True


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere there is no fork
    os.register_at_fork(after_in_child=_mark_inherited)


class MemoryStore(MemoryAccounts, MemoryLedger, MemoryJobs):
    def __init__(self, url: StoreURL, *, clock: Clock | None = None) -> None:
        assert isinstance(url.options, MemoryOptions)
        self.url = url
        self._max_entries = url.options.max_entries
        self._clock = clock or SystemClock()
        #: the clock's now(), bound once (time.time itself for the system clock)
        self._now = time.time if type(self._clock) is SystemClock else self._clock.now
        self._lock = threading.Lock()
        self._inherited = False
        _STORES.add(self)
        self._sessions: dict[str, SessionRow] = {}
        self._tokens: dict[str, str] = {}
        self._by_user: dict[str, dict[str, None]] = {}
        self._spent: dict[str, str] = {}  # spent token hash -> session id
        self._spent_of: dict[str, list[str]] = {}
        self._state: dict[_ScopeKey, dict[str, StateRow]] = {}
        self._lru: OrderedDict[_Entry, None] = OrderedDict()
        MemoryAccounts.__init__(self)
        MemoryLedger.__init__(self)
        MemoryJobs.__init__(self)

    @property
    def backend(self) -> str:
        return "memory"

    def _locked(self, fn: Callable[[float], T]) -> T:
        if self._inherited:
            self._refuse_inherited()
        with self._lock:
            return fn(self._now())

    def _refuse_inherited(self) -> None:
        raise ConfigurationError(
            "a memory:// store cannot be shared across processes; "
            "use sqlite, redis or postgresql when several processes need the same data"
        )

    # lifecycle

    async def open(self) -> None:
        self._locked(lambda now: None)

    async def aclose(self) -> None:
        return None

    async def ping(self) -> float:
        return 0.0

    async def server_version(self) -> str:
        return "in-process"

    def pool_stats(self) -> PoolStats:
        return PoolStats(in_use=0, idle=0, waiting=0, max_size=0)

    def __len__(self) -> int:
        return len(self._lru)

    # LRU bookkeeping

    def _use(self, entry: _Entry) -> None:
        self._lru[entry] = None
        self._lru.move_to_end(entry)
        self._evict()

    def _evict(self) -> None:
        while len(self._lru) > self._max_entries:
            oldest, _ = self._lru.popitem(last=False)
            self._forget(oldest)

    def _forget_entry(self, entry: _Entry) -> None:
        self._lru.pop(entry, None)

    def _forget(self, entry: _Entry) -> None:
        if isinstance(entry, str):
            self._limits.pop(entry, None)
        elif entry[0] == "s":
            self._drop_session(entry[1])
        else:
            key, name = (entry[0], entry[1], entry[2]), entry[3]
            docs = self._state.get(key)
            if docs is not None:
                docs.pop(name, None)
                if not docs:
                    del self._state[key]

    def _drop_session(self, session_id: str) -> None:
        row = self._sessions.pop(session_id, None)
        self._lru.pop(("s", session_id), None)
        if row is None:
            return
        if self._tokens.get(row.token_hash) == session_id:
            del self._tokens[row.token_hash]
        for spent in self._spent_of.pop(session_id, []):
            self._spent.pop(spent, None)
        owned = self._by_user.get(row.user_id)
        if owned is not None:
            owned.pop(session_id, None)
            if not owned:
                del self._by_user[row.user_id]
        self._drop_state(("session", row.user_id, session_id))
        self._drop_budget(row.user_id, session_id)

    def _drop_state(self, key: _ScopeKey) -> None:
        for name in self._state.pop(key, {}):
            self._lru.pop((*key, name), None)

    # sessions

    def _get(self, key: SessionKey) -> SessionRow | None:
        if isinstance(key, ByToken):
            session_id = self._tokens.get(key.token_hash)
            row = self._sessions.get(session_id) if session_id else None
            return row if row is not None and row.token_hash == key.token_hash else None
        row = self._sessions.get(key.session_id)
        return row if row is not None and row.user_id == key.user_id else None

    def _put(self, row: SessionRow) -> SessionRow:
        self._sessions[row.session_id] = row
        self._tokens[row.token_hash] = row.session_id
        self._by_user.setdefault(row.user_id, {})[row.session_id] = None
        self._use(("s", row.session_id))
        return row

    def _live_of(self, user_id: str, now: float) -> list[SessionRow]:
        rows = [self._sessions[sid] for sid in self._by_user.get(user_id, {})]
        return sorted((r for r in rows if r.is_live(now)), key=lambda r: r.created_at)

    def _revoke(self, row: SessionRow, now: float) -> None:
        self._sessions[row.session_id] = replace(row, revoked_at=now)
        self._drop_state(("session", row.user_id, row.session_id))

    async def create_session(
        self, new: NewSessionRow, *, max_sessions: int, evict_oldest: bool
    ) -> Created:
        def op(now: float) -> Created:
            existing = self._sessions.get(new.session_id)
            if existing is not None:
                if existing.token_hash != new.token_hash:
                    raise ConfigurationError("session id collision")
                return Created(existing, ())
            live = self._live_of(new.user_id, now)
            excess = len(live) - max_sessions + 1
            if excess > 0 and not evict_oldest:
                return Created(None, ())
            evicted = live[: max(excess, 0)]
            for row in evicted:
                self._revoke(row, now)
            created = self._put(stamp_new_session(new, now))
            return Created(created, tuple(r.session_id for r in evicted))

        return self._locked(op)

    async def find_session(self, key: SessionKey, *, touch_interval: float | None) -> Lookup:
        def op(now: float) -> Lookup:
            row = self._get(key)
            if row is not None and touch_due(row, now, touch_interval):
                row = self._put(_touched(row, now))
            return Lookup(row, now)

        return self._locked(op)

    async def rotate_session(self, key: SessionKey, new_token_hash: str) -> Lookup:
        def op(now: float) -> Lookup:
            row = self._get(key)
            if row is None or not row.is_live(now):
                return Lookup(row, now)
            return Lookup(self._rotate(row, new_token_hash, now), now)

        return self._locked(op)

    def _rotate(self, row: SessionRow, new_token_hash: str, now: float) -> SessionRow:
        del self._tokens[row.token_hash]
        self._spent[row.token_hash] = row.session_id
        self._spent_of.setdefault(row.session_id, []).append(row.token_hash)
        rotated = replace(
            _touched(row, now),
            token_hash=new_token_hash,
            generation=row.generation + 1,
            prev_token_hash=row.token_hash,
            rotated_at=now,
        )
        return self._put(rotated)

    async def refresh_session(
        self, token_hash: str, new_token_hash: str, *, grace: float
    ) -> Refreshed:
        def op(now: float) -> Refreshed:
            row = self._get(ByToken(token_hash))
            if row is not None:
                if not row.is_live(now):
                    return Refreshed("dead", row, now)
                return Refreshed("rotated", self._rotate(row, new_token_hash, now), now)
            row = self._sessions.get(self._spent.get(token_hash, ""))
            if row is None:
                return Refreshed("unknown", None, now)
            outcome = refresh_of_spent(row, token_hash, new_token_hash, grace, now)
            if outcome == "reused" and row.is_live(now):
                self._revoke(row, now)
                row = self._sessions[row.session_id]
            return Refreshed(outcome, row, now)

        return self._locked(op)

    async def revoke_session(self, key: ById) -> bool:
        def op(now: float) -> bool:
            row = self._get(key)
            if row is None or not row.is_live(now):
                return False
            self._revoke(row, now)
            return True

        return self._locked(op)

    async def revoke_user_sessions(self, user_id: str, *, keep: str | None = None) -> int:
        def op(now: float) -> int:
            doomed = [r for r in self._live_of(user_id, now) if r.session_id != keep]
            for row in doomed:
                self._revoke(row, now)
            return len(doomed)

        return self._locked(op)

    async def list_sessions(self, user_id: str) -> tuple[list[SessionRow], float]:
        return self._locked(lambda now: (self._live_of(user_id, now), now))

    async def sweep_sessions(self, limit: int) -> int:
        def op(now: float) -> int:
            dead = [r.session_id for r in self._sessions.values() if now >= r.idle_expires_at]
            for session_id in dead[:limit]:
                self._drop_session(session_id)
            return min(len(dead), limit)

        return self._locked(op)

    # state

    def _owner_live(self, scope: StateScope, now: float) -> bool:
        if scope.kind == "user":
            return True
        row = self._sessions.get(scope.session_id or "")
        return row is not None and row.user_id == scope.user_id and row.is_live(now)

    async def get_state(self, scope: StateScope, name: str) -> StateRow | None:
        def op(now: float) -> StateRow | None:
            key = _scope_key(scope)
            if not self._owner_live(scope, now):
                return None
            found = self._state.get(key, {}).get(name)
            if found is not None:
                self._use((*key, name))
            return found

        return self._locked(op)

    async def put_state(
        self, scope: StateScope, name: str, data: str, *, expected_version: int | None
    ) -> StateWrite:
        def op(now: float) -> StateWrite:
            key = _scope_key(scope)
            current = self._state.get(key, {}).get(name)
            version = current.version if current else None
            if not self._owner_live(scope, now):
                return StateWrite(False, version, owner_live=False)
            if not version_matches(version, expected_version):
                return StateWrite(False, version)
            new_version = (version or 0) + 1
            self._state.setdefault(key, {})[name] = StateRow(data, new_version)
            self._use((*key, name))
            return StateWrite(True, new_version)

        return self._locked(op)

    async def delete_state(
        self, scope: StateScope, name: str, *, expected_version: int | None
    ) -> StateWrite:
        def op(now: float) -> StateWrite:
            key = _scope_key(scope)
            docs = self._state.get(key, {})
            current = docs.get(name)
            if not self._owner_live(scope, now):
                return StateWrite(False, current.version if current else None, owner_live=False)
            if current is None or not version_matches(current.version, expected_version):
                return StateWrite(False, current.version if current else None)
            del docs[name]
            self._lru.pop((*key, name), None)
            if not docs:
                del self._state[key]
            return StateWrite(True, None)

        return self._locked(op)

    async def list_state(self, scope: StateScope) -> list[str]:
        def op(now: float) -> list[str]:
            if not self._owner_live(scope, now):
                return []
            return sorted(self._state.get(_scope_key(scope), {}))

        return self._locked(op)


def _touched(row: SessionRow, now: float) -> SessionRow:
    return replace(
        row, last_seen_at=now, idle_expires_at=min(now + row.idle_timeout, row.expires_at)
    )
