"""The PostgreSQL store's tables, created and migrated forward when the store opens.

Migrations run in one transaction under an advisory lock derived from the schema name, so
any number of processes may open the same fresh schema at once: the first one in creates
the tables, the others find them there. An up-to-date schema is recognised with two reads
and no lock, so a role without CREATE privilege can open a schema someone else created.
"""

from __future__ import annotations

import hashlib
from typing import Any

from psycopg import AsyncConnection, sql

from ..errors import ConfigurationError

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
)
LATEST = len(_MIGRATIONS)


def lock_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key for ``parts`` (which include the schema name)."""
    digest = hashlib.sha256("\x1f".join(("sessionward", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def migrate(conn: AsyncConnection[Any], schema: str) -> int:
    """Bring ``schema`` to :data:`LATEST`; return the version it was at before."""
    found = await _installed_version(conn, schema)
    if found == LATEST:
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
        for version in range(found + 1, LATEST + 1):
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
    names = {
        "sessions": sql.Identifier(schema, "sw_sessions"),
        "state": sql.Identifier(schema, "sw_state"),
    }
    for statement in _MIGRATIONS[version - 1]:
        await conn.execute(sql.SQL(statement).format(**names))
    await conn.execute(
        sql.SQL("INSERT INTO {} (version) VALUES (%s)").format(_version_table(schema)),
        [version],
    )


def _version_table(schema: str) -> sql.Identifier:
    return sql.Identifier(schema, "sw_schema_version")


def _check_known(found: int, schema: str) -> None:
    if found > LATEST:
        raise ConfigurationError(
            f"the PostgreSQL schema {schema!r} is at version {found}, but this sessionward "
            f"knows versions up to {LATEST}: upgrade sessionward"
        )
