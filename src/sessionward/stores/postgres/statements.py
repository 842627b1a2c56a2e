"""The PostgreSQL store's statements, composed once per schema with qualified identifiers.

Parameters are named. ``%(now)s`` is the injected clock's time, or NULL to use the
server's (``clock_timestamp()``, read once per statement through a materialized CTE).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from psycopg import sql

from ..records import ByToken, SessionKey, StateScope
from .schema import table_names

S = TypeVar("S")

Params = dict[str, Any]

SESSION_COLUMNS = (
    "session_id",
    "user_id",
    "token_hash",
    "created_at",
    "last_seen_at",
    "idle_timeout",
    "idle_expires_at",
    "expires_at",
    "revoked_at",
    "ip",
    "user_agent",
    "metadata",
    "generation",
    "prev_token_hash",
    "rotated_at",
)
USER_COLUMNS = (
    "user_id",
    "username",
    "username_key",
    "password_hash",
    "roles",
    "disabled",
    "created_at",
    "updated_at",
)

_CLOCK = (
    "WITH clock AS MATERIALIZED ("
    "SELECT COALESCE(%(now)s::float8, extract(epoch FROM clock_timestamp())::float8) AS now)"
)
_SWEPT = "unnest(%(session_ids)s::text[], %(user_ids)s::text[]) AS d(session_id, user_id)"
_BY_HASH = "s.token_hash = %(token_hash)s"
_BY_ID = "s.session_id = %(session_id)s AND s.user_id = %(user_id)s"
_STATE_KEY = (
    "kind = %(kind)s AND user_id = %(user_id)s AND owner_id = %(owner_id)s AND name = %(name)s"
)
# A session scope whose session is not live reads as empty, even before a sweep.
_OWNER_LIVE = """ AND (%(kind)s = 'user' OR EXISTS (
    SELECT 1 FROM {sessions} AS s, clock
    WHERE s.session_id = %(owner_id)s AND s.user_id = %(user_id)s
      AND s.revoked_at IS NULL AND clock.now < s.idle_expires_at))"""

# The row the update returned if it applied, else the row as the statement found it.
_PICK = """, found AS (
    SELECT * FROM changed
    UNION ALL
    SELECT {s_cols} FROM {sessions} AS s WHERE {key} AND NOT EXISTS (SELECT 1 FROM changed)
)
SELECT clock.now, found.* FROM clock LEFT JOIN found ON true"""

_FIND = (
    _CLOCK
    + """, changed AS (
    UPDATE {sessions} AS s
    SET last_seen_at = clock.now,
        idle_expires_at = LEAST(clock.now + s.idle_timeout, s.expires_at)
    FROM clock
    WHERE {key} AND %(touch)s::float8 IS NOT NULL
      AND s.revoked_at IS NULL AND clock.now < s.idle_expires_at
      AND clock.now - s.last_seen_at >= %(touch)s::float8
    RETURNING {s_cols}
)"""
    + _PICK
)

# The old hash becomes prev_token_hash and is remembered as spent, in the same statement.
# Hashes are random, so one is never spent twice; if it were, the latest rotation would own
# it, as in the memory store.
_ROTATE = (
    _CLOCK
    + """, changed AS (
    UPDATE {sessions} AS s
    SET token_hash = %(new_token_hash)s, generation = s.generation + 1,
        prev_token_hash = s.token_hash, rotated_at = clock.now,
        last_seen_at = clock.now,
        idle_expires_at = LEAST(clock.now + s.idle_timeout, s.expires_at)
    FROM clock
    WHERE {key} AND s.revoked_at IS NULL AND clock.now < s.idle_expires_at
    RETURNING {s_cols}
), spent AS (
    INSERT INTO {spent} (token_hash, session_id, user_id)
    SELECT changed.prev_token_hash, changed.session_id, changed.user_id FROM changed
    ON CONFLICT (token_hash) DO UPDATE
    SET session_id = excluded.session_id, user_id = excluded.user_id
)"""
    + _PICK
)

# Locks the session that carries the hash, or once carried it, and returns the row as locked
# (FOR UPDATE returns the latest version, even one committed while this statement waited);
# the clock is read after the lock, so a waiter never judges a rival's rotation in the past.
_LOCK_FOR_REFRESH = """WITH target AS MATERIALIZED (
    SELECT {s_cols} FROM {sessions} AS s
    WHERE s.session_id = COALESCE(
        (SELECT c.session_id FROM {sessions} AS c WHERE c.token_hash = %(token_hash)s),
        (SELECT p.session_id FROM {spent} AS p WHERE p.token_hash = %(token_hash)s))
    FOR UPDATE OF s
), clock AS MATERIALIZED (
    SELECT COALESCE(%(now)s::float8, extract(epoch FROM clock_timestamp())::float8) AS now
    FROM (SELECT count(*) FROM target) AS locked
)
SELECT clock.now, target.* FROM clock LEFT JOIN target ON true"""

_TEMPLATES = {
    "find_by_token": _FIND.replace("{key}", _BY_HASH),
    "find_by_id": _FIND.replace("{key}", _BY_ID),
    "rotate_by_token": _ROTATE.replace("{key}", _BY_HASH),
    "rotate_by_id": _ROTATE.replace("{key}", _BY_ID),
    "lock_for_refresh": _LOCK_FOR_REFRESH,
    # Waits for the user's lock, then reads the clock, so times never run backwards
    # between two transactions that hold it one after the other.
    "lock": """WITH held AS MATERIALIZED (SELECT pg_advisory_xact_lock(%(lock)s::int8))
SELECT COALESCE(%(now)s::float8, extract(epoch FROM clock_timestamp())::float8) FROM held""",
    "get_session": "SELECT {cols} FROM {sessions} WHERE session_id = %(session_id)s",
    "insert_session": "INSERT INTO {sessions} ({cols}) VALUES ({values}) RETURNING {cols}",
    # the primary key: an administrator's lookup by id alone
    "owner_of": "SELECT s.user_id FROM {sessions} AS s WHERE s.session_id = %(session_id)s",
    "live_of_user": _CLOCK
    + """
SELECT clock.now, {s_cols} FROM clock LEFT JOIN {sessions} AS s
  ON s.user_id = %(user_id)s AND s.revoked_at IS NULL AND clock.now < s.idle_expires_at
ORDER BY s.created_at, s.seq""",
    "revoke_ids": """UPDATE {sessions} SET revoked_at = %(now)s::float8
WHERE session_id = ANY(%(session_ids)s::text[])
  AND revoked_at IS NULL AND %(now)s::float8 < idle_expires_at
RETURNING session_id, user_id""",
    "revoke_one": _CLOCK
    + """
UPDATE {sessions} AS s SET revoked_at = clock.now FROM clock
WHERE """
    + _BY_ID
    + """ AND s.revoked_at IS NULL AND clock.now < s.idle_expires_at
RETURNING s.session_id, s.user_id""",
    "sweep": _CLOCK
    + """, doomed AS (
    SELECT s.session_id FROM {sessions} AS s
    WHERE s.idle_expires_at <= (SELECT now FROM clock)
    LIMIT %(limit)s
    FOR UPDATE OF s SKIP LOCKED
)
DELETE FROM {sessions} AS s USING doomed WHERE s.session_id = doomed.session_id
RETURNING s.session_id, s.user_id""",
    "drop_session_state": """DELETE FROM {state} AS t
USING unnest(%(session_ids)s::text[], %(user_ids)s::text[]) AS d(session_id, user_id)
WHERE t.kind = 'session' AND t.owner_id = d.session_id AND t.user_id = d.user_id""",
    # After the sweep's DELETE, as its own statement: a fresh snapshot sees a spent hash or
    # a document committed while the sweep waited for the session row. Budget rows go here
    # too (waiting for a refund or capture that holds one); their ledgers and holds in the
    # sweep's next statement (drop_swept_ledger), whose snapshot sees what such a one wrote.
    "drop_swept": """WITH documents AS (
    DELETE FROM {state} AS t
    USING unnest(%(session_ids)s::text[], %(user_ids)s::text[]) AS d(session_id, user_id)
    WHERE t.kind = 'session' AND t.owner_id = d.session_id AND t.user_id = d.user_id
), budgets AS (
    DELETE FROM {budgets} AS b
    USING unnest(%(session_ids)s::text[], %(user_ids)s::text[]) AS d(session_id, user_id)
    WHERE b.user_id = d.user_id AND b.session_id = d.session_id
)
DELETE FROM {spent} WHERE session_id = ANY(%(session_ids)s::text[])""",
    # FOR SHARE: a concurrent revoke (an UPDATE of the row) waits for this transaction, so
    # either it sees our write and deletes it, or we see it revoked and write nothing.
    "owner_live": _CLOCK
    + """
SELECT s.user_id = %(user_id)s AND s.revoked_at IS NULL AND clock.now < s.idle_expires_at
FROM {sessions} AS s, clock WHERE s.session_id = %(owner_id)s FOR SHARE OF s""",
    "lock_state": "SELECT version FROM {state} WHERE " + _STATE_KEY + " FOR UPDATE",
    # On conflict, lock the rival's row without changing it, so that a re-read is exact.
    "create_state": """INSERT INTO {state} AS t (kind, user_id, owner_id, name, data, version)
VALUES (%(kind)s, %(user_id)s, %(owner_id)s, %(name)s, %(data)s, 1)
ON CONFLICT (kind, user_id, owner_id, name) DO UPDATE SET version = t.version WHERE false
RETURNING t.version""",
    "update_state": "UPDATE {state} SET data = %(data)s, version = version + 1 WHERE "
    + _STATE_KEY
    + " RETURNING version",
    "delete_state": "DELETE FROM {state} WHERE " + _STATE_KEY,
    "get_state": _CLOCK + " SELECT data, version FROM {state} WHERE " + _STATE_KEY + _OWNER_LIVE,
    # "C" orders by code point, as Python's sorted() does.
    "state_names": _CLOCK + " SELECT name FROM {state} "
    "WHERE kind = %(kind)s AND user_id = %(user_id)s AND owner_id = %(owner_id)s"
    + _OWNER_LIVE
    + ' ORDER BY name COLLATE "C"',
    # The sweep's last statement, after the one that deleted (so waited for) the budget
    # rows: its fresh snapshot sees a line written by whoever held one of them.
    "drop_swept_ledger": "WITH holds AS (DELETE FROM {holds} AS h USING "
    + _SWEPT
    + """
    WHERE h.user_id = d.user_id AND h.session_id = d.session_id)
DELETE FROM {ledger} AS l USING """
    + _SWEPT
    + """
WHERE l.user_id = d.user_id AND l.session_id = d.session_id""",
}


_ACCOUNT_TEMPLATES = {
    "create_user": _CLOCK
    + """
INSERT INTO {users} ({u_cols})
SELECT %(user_id)s, %(username)s, %(username_key)s, %(password_hash)s, %(roles)s,
       false, clock.now, clock.now
FROM clock
ON CONFLICT DO NOTHING
RETURNING {u_cols}""",
    "get_user": "SELECT {u_cols} FROM {users} WHERE user_id = %(user_id)s",
    "find_user": "SELECT {u_cols} FROM {users} WHERE username_key = %(username_key)s",
    "list_users": """SELECT {u_cols} FROM {users}
WHERE %(after)s::text IS NULL OR username_key > %(after)s::text COLLATE "C"
ORDER BY username_key COLLATE "C" LIMIT %(limit)s""",
    # The rule of rules.users.apply_change; NULL leaves a field as it is.
    "update_user": _CLOCK
    + """
UPDATE {users} AS u
SET password_hash = COALESCE(%(password_hash)s::text, u.password_hash),
    disabled = COALESCE(%(disabled)s::boolean, u.disabled),
    roles = COALESCE(%(roles)s::text, u.roles),
    updated_at = clock.now
FROM clock
WHERE u.user_id = %(user_id)s
  AND (%(expected_hash)s::text IS NULL OR u.password_hash = %(expected_hash)s::text)
RETURNING {u_qualified}""",
    "gcra": """SELECT allowed, tats, now FROM {gcra}(%(keys)s::text[], %(periods)s::float8[],
    %(capacities)s::float8[], %(costs)s::float8[], %(apply)s::boolean, %(now)s::float8)""",
    # Row locks in the order sw_gcra takes them, so a reset never deadlocks with a decision.
    "reset_limits": """WITH doomed AS (
    SELECT l.key FROM {limits} AS l WHERE l.key = ANY(%(keys)s::text[])
    ORDER BY l.key FOR UPDATE
), gone AS (
    DELETE FROM {limits} AS l USING doomed WHERE l.key = doomed.key RETURNING 1
)
SELECT count(*) FROM gone""",
    # SKIP LOCKED: never waits for a decision in progress (its row is not passed anyway).
    "sweep_limits": _CLOCK
    + """, doomed AS (
    SELECT l.key FROM {limits} AS l WHERE l.tat <= (SELECT now FROM clock)
    LIMIT %(limit)s
    FOR UPDATE OF l SKIP LOCKED
), gone AS (
    DELETE FROM {limits} AS l USING doomed WHERE l.key = doomed.key RETURNING 1
)
SELECT count(*) FROM gone""",
}


@dataclass(frozen=True, slots=True)
class Statements:
    find_by_token: sql.Composed
    find_by_id: sql.Composed
    rotate_by_token: sql.Composed
    rotate_by_id: sql.Composed
    lock_for_refresh: sql.Composed
    lock: sql.Composed
    get_session: sql.Composed
    insert_session: sql.Composed
    owner_of: sql.Composed
    live_of_user: sql.Composed
    revoke_ids: sql.Composed
    revoke_one: sql.Composed
    sweep: sql.Composed
    drop_session_state: sql.Composed
    drop_swept: sql.Composed
    drop_swept_ledger: sql.Composed
    owner_live: sql.Composed
    lock_state: sql.Composed
    create_state: sql.Composed
    update_state: sql.Composed
    delete_state: sql.Composed
    get_state: sql.Composed
    state_names: sql.Composed
    create_user: sql.Composed
    get_user: sql.Composed
    find_user: sql.Composed
    list_users: sql.Composed
    update_user: sql.Composed
    gcra: sql.Composed
    reset_limits: sql.Composed
    sweep_limits: sql.Composed

    def find(self, key: SessionKey) -> sql.Composed:
        return self.find_by_token if isinstance(key, ByToken) else self.find_by_id

    def rotate(self, key: SessionKey) -> sql.Composed:
        return self.rotate_by_token if isinstance(key, ByToken) else self.rotate_by_id


def compose(schema: str) -> Statements:
    names = {
        **table_names(schema),
        "cols": sql.SQL(", ").join(map(sql.Identifier, SESSION_COLUMNS)),
        "s_cols": sql.SQL(", ").join(sql.Identifier("s", c) for c in SESSION_COLUMNS),
        "values": sql.SQL(", ").join(map(sql.Placeholder, SESSION_COLUMNS)),
        "u_cols": sql.SQL(", ").join(map(sql.Identifier, USER_COLUMNS)),
        "u_qualified": sql.SQL(", ").join(sql.Identifier("u", c) for c in USER_COLUMNS),
    }
    return compose_into(Statements, {**_TEMPLATES, **_ACCOUNT_TEMPLATES}, names)


def compose_into(
    cls: type[S], templates: Mapping[str, str], names: Mapping[str, sql.Composable]
) -> S:
    """A statements dataclass: each field's template formatted with the schema's names."""
    return cls(**{f.name: sql.SQL(templates[f.name]).format(**names) for f in fields(cls)})  # type: ignore[arg-type]


def key_params(key: SessionKey) -> Params:
    if isinstance(key, ByToken):
        return {"token_hash": key.token_hash}
    return {"session_id": key.session_id, "user_id": key.user_id}


def state_params(scope: StateScope, name: str) -> Params:
    return {
        "kind": scope.kind,
        "user_id": scope.user_id,
        "owner_id": scope.session_id or "",
        "name": name,
    }
