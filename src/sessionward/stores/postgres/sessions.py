"""The PostgreSQL store's sessions (a layer of :class:`~.store.PostgresStore`).

Each operation is one statement, or one short transaction that takes its locks in one
order (the user's advisory lock, then session rows, then state rows), so it is atomic
against any number of processes. Validating a session is one round trip: a statement that
touches the row when the interval has passed and returns it either way. Times come from
the server's ``clock_timestamp()`` unless a clock is injected, so app servers with skewed
clocks agree.

Rotation keeps history: the old hash becomes ``prev_token_hash`` and a row of
``sw_spent_tokens`` (deleted with the session by a sweep). A refresh is one transaction that
first locks the session carrying, or once carrying, the presented hash (``FOR UPDATE``), so
parallel refreshes of one session run one after the other; the outcome is then decided by
the same rule as every backend (``rules.sessions.refresh_of_spent``).

Failures: connection loss, pool timeouts, deadlocks and serialization failures are
retried. A transaction that failed before COMMIT was rolled back, so even a
compare-and-set is retried then; one that lost its connection during COMMIT may have been
applied, so a compare-and-set is not repeated and raises ``StorageUnavailable``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from psycopg.rows import TupleRow

from ...errors import ConfigurationError
from ...rules.sessions import refresh_of_spent, stamp_new_session
from ..records import ById, Created, Lookup, NewSessionRow, Refreshed, SessionKey, SessionRow
from .connection import Conn, PostgresCore, fetch_all, fetch_one
from .schema import lock_key
from .statements import key_params


class PostgresSessions(PostgresCore):
    async def _lock_user(self, conn: Conn, user_id: str) -> float:
        """Serialize with every other writer of this user's session list; return now."""
        key = lock_key(self._schema, "user", user_id)
        row = await fetch_one(conn, self._sql.lock, {"lock": key, "now": self._now()})
        assert row is not None
        return float(row[0])

    async def _drop_state(self, conn: Conn, owners: Sequence[TupleRow]) -> None:
        """Delete the session state of ``owners``: ``(session_id, user_id)`` rows."""
        if owners:
            params = {"session_ids": [o[0] for o in owners], "user_ids": [o[1] for o in owners]}
            await conn.execute(self._sql.drop_session_state, params)

    async def _live_of(
        self, conn: Conn, user_id: str, now: float | None
    ) -> tuple[list[SessionRow], float]:
        """The user's live sessions, oldest first, and the time they were judged at."""
        rows = await fetch_all(conn, self._sql.live_of_user, {"user_id": user_id, "now": now})
        return [_session(r[1:]) for r in rows if r[1] is not None], float(rows[0][0])

    async def _revoke(self, conn: Conn, session_ids: list[str], now: float) -> tuple[str, ...]:
        if not session_ids:
            return ()
        params = {"session_ids": session_ids, "now": now}
        revoked = await fetch_all(conn, self._sql.revoke_ids, params)
        await self._drop_state(conn, revoked)
        done = {r[0] for r in revoked}
        return tuple(s for s in session_ids if s in done)

    async def create_session(
        self, new: NewSessionRow, *, max_sessions: int, evict_oldest: bool
    ) -> Created:
        async def work(conn: Conn) -> Created:
            now = await self._lock_user(conn, new.user_id)
            existing = await fetch_one(conn, self._sql.get_session, asdict(new))
            if existing is not None:
                if _session(existing).token_hash != new.token_hash:
                    raise ConfigurationError("session id collision")
                return Created(_session(existing), ())
            live, _ = await self._live_of(conn, new.user_id, now)
            excess = len(live) - max_sessions + 1
            if excess > 0 and not evict_oldest:
                return Created(None, ())
            evicted = await self._revoke(conn, [r.session_id for r in live[: max(excess, 0)]], now)
            row = await fetch_one(
                conn, self._sql.insert_session, asdict(stamp_new_session(new, now))
            )
            assert row is not None
            return Created(_session(row), evicted)

        # Repeatable: a retry after a commit finds the session by its id and returns it.
        return await self._transaction(work)

    async def find_session(self, key: SessionKey, *, touch_interval: float | None) -> Lookup:
        params = {**key_params(key), "now": self._now(), "touch": touch_interval}
        return _lookup(await self._one(self._sql.find(key), params))

    async def rotate_session(self, key: SessionKey, new_token_hash: str) -> Lookup:
        params = {**key_params(key), "now": self._now(), "new_token_hash": new_token_hash}

        # In a transaction, not autocommit, so that a connection found dead before COMMIT
        # (after a server restart) is retried rather than reported as a maybe-rotation.
        async def work(conn: Conn) -> Lookup:
            return _lookup(await fetch_one(conn, self._sql.rotate(key), params))

        return await self._transaction(work, idempotent=False)

    async def refresh_session(
        self, token_hash: str, new_token_hash: str, *, grace: float
    ) -> Refreshed:
        lock = {"token_hash": token_hash, "now": self._now()}

        # One transaction holding the session row FOR UPDATE from the first statement, so
        # parallel refreshes of one session run one after the other: the first rotates and
        # the others find the hash spent, by the rotation they waited for.
        async def work(conn: Conn) -> Refreshed:
            found = _lookup(await fetch_one(conn, self._sql.lock_for_refresh, lock))
            row, now = found.row, found.now
            if row is None:
                return Refreshed("unknown", None, now)
            if row.token_hash == token_hash:
                if not row.is_live(now):
                    return Refreshed("dead", row, now)
                key = {**key_params(ById(row.user_id, row.session_id)), "now": now}
                params = {**key, "new_token_hash": new_token_hash}
                rotated = _lookup(await fetch_one(conn, self._sql.rotate_by_id, params)).row
                assert rotated is not None and rotated.token_hash == new_token_hash  # locked
                return Refreshed("rotated", rotated, now)
            outcome = refresh_of_spent(row, token_hash, new_token_hash, grace, now)
            if outcome == "reused" and row.is_live(now):
                await self._revoke(conn, [row.session_id], now)
                row = replace(row, revoked_at=now)
            return Refreshed(outcome, row, now)

        # Not repeatable after a lost COMMIT: the repeat would find its own rotation, and
        # past the grace period call it a reuse and revoke the session.
        return await self._transaction(work, idempotent=False)

    async def revoke_session(self, key: ById) -> bool:
        async def work(conn: Conn) -> bool:
            params = {**key_params(key), "now": self._now()}
            revoked = await fetch_all(conn, self._sql.revoke_one, params)
            await self._drop_state(conn, revoked)
            return bool(revoked)

        return await self._transaction(work)

    async def revoke_user_sessions(self, user_id: str, *, keep: str | None = None) -> int:
        async def work(conn: Conn) -> int:
            now = await self._lock_user(conn, user_id)
            live, _ = await self._live_of(conn, user_id, now)
            doomed = [r.session_id for r in live if r.session_id != keep]
            return len(await self._revoke(conn, doomed, now))

        return await self._transaction(work)

    async def find_session_owner(self, session_id: str) -> str | None:
        row = await self._one(self._sql.owner_of, {"session_id": session_id})
        return None if row is None else str(row[0])

    async def list_sessions(self, user_id: str) -> tuple[list[SessionRow], float]:
        async def op() -> tuple[list[SessionRow], float]:
            async with self._live_pool().connection() as conn:
                return await self._live_of(conn, user_id, self._now())

        return await self._retry(op)

    async def sweep_sessions(self, limit: int) -> int:
        if limit <= 0:
            return 0

        async def work(conn: Conn) -> int:
            swept = await fetch_all(conn, self._sql.sweep, {"now": self._now(), "limit": limit})
            if swept:  # their state, spent hashes, budgets, ledgers and holds go with them
                params = {"session_ids": [r[0] for r in swept], "user_ids": [r[1] for r in swept]}
                await conn.execute(self._sql.drop_swept, params)
                await conn.execute(self._sql.drop_swept_ledger, params)
            return len(swept)

        return await self._transaction(work)


def _session(row: Sequence[Any]) -> SessionRow:
    return SessionRow(*row)


def _lookup(row: TupleRow | None) -> Lookup:
    assert row is not None  # the statement always returns the clock's row
    found = None if row[1] is None else _session(row[1:])
    return Lookup(found, float(row[0]))
