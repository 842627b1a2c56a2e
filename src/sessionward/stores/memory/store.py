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
from typing import TypeVar

from ...clock import Clock, SystemClock
from ...errors import ConfigurationError
from ...urls import MemoryOptions, StoreURL
from ..records import PoolStats, StateScope
from .budgets import MemoryBudgets
from .capacity import MemoryCapacity
from .jobs import MemoryJobs
from .limits import MemoryLimits
from .sessions import MemorySessions
from .state import MemoryState, ScopeKey
from .users import MemoryUsers

T = TypeVar("T")
#: an LRU entry: ("s", session id), (kind, user id, session id, name) for a state document,
#: or a limiter key itself (a str: the commonest entry, made at no cost)
_Entry = tuple[str, ...] | str


#: this process's stores. A forked child marks its copies inherited: checked per operation for
#: nothing, where comparing os.getpid() costs a system call each time.
_STORES: weakref.WeakSet[MemoryStore] = weakref.WeakSet()


def _mark_inherited() -> None:
    for store in list(_STORES):
        store._inherited = True


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere there is no fork
    os.register_at_fork(after_in_child=_mark_inherited)


class MemoryStore(
    MemorySessions,
    MemoryState,
    MemoryUsers,
    MemoryLimits,
    MemoryBudgets,
    MemoryJobs,
    MemoryCapacity,
):
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
        self._lru: OrderedDict[_Entry, None] = OrderedDict()
        MemorySessions.__init__(self)
        MemoryState.__init__(self)
        MemoryUsers.__init__(self)
        MemoryLimits.__init__(self)
        MemoryBudgets.__init__(self)
        MemoryJobs.__init__(self)
        MemoryCapacity.__init__(self)

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

    def _drop_state(self, key: ScopeKey) -> None:
        for name in self._state.pop(key, {}):
            self._lru.pop((*key, name), None)

    # what state and budgets ask of sessions

    def _owner_live(self, scope: StateScope, now: float) -> bool:
        if scope.kind == "user":
            return True
        row = self._sessions.get(scope.session_id or "")
        return row is not None and row.user_id == scope.user_id and row.is_live(now)
