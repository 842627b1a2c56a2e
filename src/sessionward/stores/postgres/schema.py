"""The PostgreSQL store's tables, created and migrated forward when the store opens.

Migrations run in one transaction under an advisory lock derived from the schema name, so
any number of processes may open the same fresh schema at once: the first one in creates
the tables, the others find them there. An up-to-date schema is recognised with two reads
and no lock, so a role without CREATE privilege can open a schema someone else created.

Migrations are append-only: a released one is never edited, a change is a new one. Version 2
adds rotation history (``prev_token_hash``, ``rotated_at`` and the spent hashes), users, and
GCRA limits with their decision function ``sw_gcra`` (see :data:`GCRA_FUNCTION`). Version 3
adds budgets, user limits, the ledger and holds, with the functions that move money (in
:mod:`.budgets_schema`, which is part of that migration). Version 4 adds the job
queues (``sw_jobs``, ``sw_job_queues``) and the functions that change them
(:mod:`.jobs_schema`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from psycopg import AsyncConnection, sql

from ...errors import ConfigurationError
from .budgets_schema import LEDGER_MIGRATION
from .jobs_schema import JOBS_MIGRATION

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE {sessions} (
            session_id text PRIMARY KEY,
            user_id text NOT NULL,
            token_hash text NOT NULL UNIQUE,
            created_at float8 NOT NULL,
            last_seen_at float8 NOT NULL,
            idle_timeout float8 NOT NULL,
            idle_expires_at float8 NOT NULL,
            expires_at float8 NOT NULL,
            revoked_at float8,
            ip text,
            user_agent text,
            metadata text NOT NULL,
            generation integer NOT NULL,
            seq bigint GENERATED ALWAYS AS IDENTITY
        )""",
        # seq breaks created_at ties in creation order, as the memory store does.
        "CREATE INDEX sw_sessions_by_user ON {sessions} (user_id, created_at, seq)",
        "CREATE INDEX sw_sessions_by_expiry ON {sessions} (idle_expires_at)",
        """CREATE TABLE {state} (
            kind text NOT NULL CHECK (kind IN ('user', 'session')),
            user_id text NOT NULL,
            owner_id text NOT NULL,
            name text NOT NULL,
            data text NOT NULL,
            version bigint NOT NULL,
            PRIMARY KEY (kind, user_id, owner_id, name)
        )""",
    ),
    (
        # Nullable and without defaults: instant on a large table, and old rows read as
        # "never rotated".
        "ALTER TABLE {sessions} ADD COLUMN prev_token_hash text, ADD COLUMN rotated_at float8",
        # Every hash a session has carried, until a sweep deletes the session.
        """CREATE TABLE {spent} (
            token_hash text PRIMARY KEY,
            session_id text NOT NULL,
            user_id text NOT NULL
        )""",
        "CREATE INDEX sw_spent_tokens_by_session ON {spent} (session_id)",
        # "C": comparisons and order by code point, as Python's sorted() (list_users pages).
        """CREATE TABLE {users} (
            user_id text PRIMARY KEY,
            username text NOT NULL,
            username_key text COLLATE "C" NOT NULL UNIQUE,
            password_hash text NOT NULL,
            roles text NOT NULL,
            disabled boolean NOT NULL,
            created_at float8 NOT NULL,
            updated_at float8 NOT NULL
        )""",
        """CREATE TABLE {limits} (
            key text COLLATE "C" PRIMARY KEY,
            tat float8 NOT NULL
        )""",
        "CREATE INDEX sw_limits_by_tat ON {limits} (tat)",
        "{gcra_function}",
    ),
    LEDGER_MIGRATION,
    JOBS_MIGRATION,
)
LATEST = len(_MIGRATIONS)

# One GCRA decision over many keys, atomic and in one round trip. With ``_apply`` it takes
# every key's row lock in sorted ("C") key order, each one fully (locked, or inserted by this
# transaction) before the next, so concurrent calls never deadlock; a key without a row gets
# a placeholder (TAT -infinity: "absent"), deleted again unless the decision is applied.
# The clock is read after the locks, so a caller that waited never decides in the past.
# Without ``_apply`` (a peek) it only reads, in one snapshot. The rule restates
# ``base.gcra_candidate``; with duplicate keys each check is decided against the stored TAT
# and the last one's candidate is stored, as the memory store does.
GCRA_FUNCTION = """CREATE FUNCTION {gcra}(
    _keys text[], _periods float8[], _capacities float8[], _costs float8[],
    _apply boolean, _now float8
) RETURNS TABLE (allowed boolean[], tats float8[], now float8)
LANGUAGE plpgsql VOLATILE AS $sw_gcra$
DECLARE
    _key text;
    _clock float8;
    _all boolean;
    _inserted text[] := ARRAY[]::text[];
BEGIN
    IF cardinality(_keys) IS DISTINCT FROM cardinality(_periods)
        OR cardinality(_keys) IS DISTINCT FROM cardinality(_capacities)
        OR cardinality(_keys) IS DISTINCT FROM cardinality(_costs) THEN
        RAISE EXCEPTION 'sw_gcra: the four arrays must have one element per check';
    END IF;
    IF _apply THEN
        FOR _key IN SELECT DISTINCT u.k COLLATE "C" FROM unnest(_keys) AS u(k) ORDER BY 1 LOOP
            LOOP
                PERFORM 1 FROM {limits} AS l WHERE l.key = _key FOR UPDATE;
                EXIT WHEN FOUND;
                -- Waits for a rival that is inserting the same key, then finds its row.
                INSERT INTO {limits} (key, tat) VALUES (_key, '-infinity') ON CONFLICT DO NOTHING;
                IF FOUND THEN
                    _inserted := _inserted || _key;
                    EXIT;
                END IF;
            END LOOP;
        END LOOP;
    END IF;
    _clock := COALESCE(_now, extract(epoch FROM clock_timestamp())::float8);
    SELECT COALESCE(array_agg(d.ok ORDER BY d.i), ARRAY[]::boolean[]),
           COALESCE(array_agg(d.candidate ORDER BY d.i), ARRAY[]::float8[]),
           COALESCE(bool_and(d.ok), true)
    INTO allowed, tats, _all
    FROM (
        SELECT c.i, c.cost < 0 OR x.candidate - _clock <= c.capacity AS ok, x.candidate
        FROM unnest(_keys, _periods, _capacities, _costs)
            WITH ORDINALITY AS c(k, period, capacity, cost, i)
        LEFT JOIN {limits} AS l ON l.key = c.k
        CROSS JOIN LATERAL (
            SELECT GREATEST(GREATEST(l.tat, _clock) + c.cost * c.period, _clock) AS candidate
        ) AS x
    ) AS d;
    IF _apply AND _all THEN
        UPDATE {limits} AS l SET tat = latest.candidate
        FROM (
            SELECT DISTINCT ON (u.k) u.k, u.candidate
            FROM unnest(_keys, tats) WITH ORDINALITY AS u(k, candidate, i)
            ORDER BY u.k, u.i DESC
        ) AS latest
        WHERE l.key = latest.k;
    ELSIF cardinality(_inserted) > 0 THEN
        DELETE FROM {limits} AS l WHERE l.key = ANY(_inserted);
    END IF;
    now := _clock;
    RETURN NEXT;
END
$sw_gcra$"""


def lock_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key for ``parts`` (which include the schema name)."""
    digest = hashlib.sha256("\x1f".join(("sessionward", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def migrate(conn: AsyncConnection[Any], schema: str, *, target: int = LATEST) -> int:
    """Bring ``schema`` to ``target`` (:data:`LATEST`; tests build old schemas with less);
    return the version it was at before."""
    found = await _installed_version(conn, schema)
    if found >= target:
        _check_known(found, schema)
        return found
    _check_known(found, schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s::int8)", [lock_key(schema, "migrate")])
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(_version_table(schema))
        )
        found = await _read_version(conn, schema)
        _check_known(found, schema)
        for version in range(found + 1, target + 1):
            await _apply(conn, schema, version)
    return found


async def _installed_version(conn: AsyncConnection[Any], schema: str) -> int:
    cur = await conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", [f'"{schema}"."sw_schema_version"']
    )
    row = await cur.fetchone()
    if row is None or not row[0]:
        return 0
    return await _read_version(conn, schema)


async def _read_version(conn: AsyncConnection[Any], schema: str) -> int:
    query = sql.SQL("SELECT COALESCE(max(version), 0) FROM {}").format(_version_table(schema))
    row = await (await conn.execute(query)).fetchone()
    return int(row[0]) if row is not None else 0


async def _apply(conn: AsyncConnection[Any], schema: str, version: int) -> None:
    names = table_names(schema)
    names["gcra_function"] = sql.SQL(GCRA_FUNCTION).format(**names)
    for statement in _MIGRATIONS[version - 1]:
        await conn.execute(sql.SQL(statement).format(**names))
    await conn.execute(
        sql.SQL("INSERT INTO {} (version) VALUES (%s)").format(_version_table(schema)),
        [version],
    )


def table_names(schema: str) -> dict[str, sql.Composable]:
    """The schema's tables and functions, qualified, for ``sql.SQL.format``."""
    return {
        "sessions": sql.Identifier(schema, "sw_sessions"),
        "state": sql.Identifier(schema, "sw_state"),
        "spent": sql.Identifier(schema, "sw_spent_tokens"),
        "users": sql.Identifier(schema, "sw_users"),
        "limits": sql.Identifier(schema, "sw_limits"),
        "gcra": sql.Identifier(schema, "sw_gcra"),
        "budgets": sql.Identifier(schema, "sw_budgets"),
        "user_budgets": sql.Identifier(schema, "sw_user_budgets"),
        "ledger": sql.Identifier(schema, "sw_ledger"),
        "holds": sql.Identifier(schema, "sw_holds"),
        "outcome": sql.Identifier(schema, "sw_budget_outcome"),
        "result": sql.Identifier(schema, "sw_budget_result"),
        "expire": sql.Identifier(schema, "sw_expire_holds"),
        "spend": sql.Identifier(schema, "sw_spend"),
        "refund": sql.Identifier(schema, "sw_refund"),
        "settle": sql.Identifier(schema, "sw_settle"),
        "budget": sql.Identifier(schema, "sw_budget"),
        "user_limit": sql.Identifier(schema, "sw_user_limit"),
        "jobs": sql.Identifier(schema, "sw_jobs"),
        "queues": sql.Identifier(schema, "sw_job_queues"),
        "lock_queue": sql.Identifier(schema, "sw_lock_job_queue"),
        "submit_job": sql.Identifier(schema, "sw_submit_job"),
        "pick_jobs": sql.Identifier(schema, "sw_pick_jobs"),
        "claim_jobs": sql.Identifier(schema, "sw_claim_jobs"),
        "cancel_job": sql.Identifier(schema, "sw_cancel_job"),
        "reap_jobs": sql.Identifier(schema, "sw_reap_jobs"),
        "purge_jobs": sql.Identifier(schema, "sw_purge_jobs"),
    }


def _version_table(schema: str) -> sql.Identifier:
    return sql.Identifier(schema, "sw_schema_version")


def _check_known(found: int, schema: str) -> None:
    if found > LATEST:
        raise ConfigurationError(
            f"the PostgreSQL schema {schema!r} is at version {found}, but this sessionward "
            f"knows versions up to {LATEST}: upgrade sessionward"
        )
