"""The PostgreSQL store's tables, created and migrated forward when the store opens.

Migrations run in one transaction under an advisory lock derived from the schema name, so
any number of processes may open the same fresh schema at once: the first one in creates
the tables, the others find them there. An up-to-date schema is recognised with two reads
and no lock, so a role without CREATE privilege can open a schema someone else created.

Migrations are append-only: a released one is never edited, a change is a new one. Version 2
adds rotation history (``prev_token_hash``, ``rotated_at`` and the spent hashes), users, and
GCRA limits with their decision function ``sw_gcra``. Version 3 adds budgets, user limits,
the ledger and holds, with the functions that move money. Version 4 adds the job queues
(``sw_jobs``, ``sw_job_queues``) and the functions that change them. Version 5 adds
``sw_release_jobs``, a clean stop's hand-back of its worker's jobs. Version 6 adds the
capacity monitor's instance samples (``sw_instances``).

The statements live in ``sql/*.sql`` beside this module (``schema.sql``: migrations 1 and 2,
``budgets.sql``: 3, ``jobs.sql``: 4, ``jobs_release.sql``: 5, ``capacity.sql``: 6), named,
each formatted with :func:`table_names` by ``psycopg.sql``; what each function locks, and
why that makes it exact, is said there. A test pins the text each migration sends, so a
released one cannot change by accident.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from psycopg import AsyncConnection, sql

from ...errors import ConfigurationError

LATEST = 6
# The files of the migrations, in order; each says which migration its statements belong to.
SQL_FILES = ("schema.sql", "budgets.sql", "jobs.sql", "jobs_release.sql", "capacity.sql")
_MARKER = re.compile(r"-- (name|migration): (\S+)")


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of a ``.sql`` file: its migration, its name, its text as sent."""

    migration: int
    name: str
    text: str


def read_sql(file: str) -> list[Statement]:
    """The statements of ``sql/<file>``: each starts at a ``-- name: <name>`` line (after a
    ``-- migration: <N>`` line), its comments follow that line, and it ends with ``;``,
    which is not sent. Text before the first marker is the file's header."""
    text = (resources.files(__package__) / "sql" / file).read_text("utf-8")
    found: list[Statement] = []
    migration, name, body = 0, "", list[str]()
    for line in [*text.splitlines(), "-- migration: 0"]:  # the last marker ends the last one
        marker = _MARKER.fullmatch(line)
        if marker is None:
            if name and (body or (line.strip() and not line.startswith("--"))):
                body.append(line)
            continue
        if name:
            found.append(Statement(migration, name, _statement(file, name, body)))
        kind, value = marker.groups()
        if kind == "migration":
            migration, name = int(value), ""
        elif migration == 0:
            raise ConfigurationError(f"{file}: '-- name: {value}' before any '-- migration:'")
        else:
            name, body = value, []
    return found


def _statement(file: str, name: str, body: list[str]) -> str:
    text = "\n".join(body).rstrip()
    if not text.endswith(";"):
        raise ConfigurationError(f"{file}: statement {name!r} does not end with ';'")
    return text[:-1]


@functools.cache
def migrations() -> tuple[tuple[str, ...], ...]:
    """The statements of each migration, in order (read once, at the first migration)."""
    statements = [s for file in SQL_FILES for s in read_sql(file)]
    versions = sorted({s.migration for s in statements})
    assert versions == list(range(1, LATEST + 1)), versions
    return tuple(tuple(s.text for s in statements if s.migration == v) for v in versions)


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
    for statement in migrations()[version - 1]:
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
        "release_jobs": sql.Identifier(schema, "sw_release_jobs"),
        "instances": sql.Identifier(schema, "sw_instances"),
    }


def _version_table(schema: str) -> sql.Identifier:
    return sql.Identifier(schema, "sw_schema_version")


def _check_known(found: int, schema: str) -> None:
    if found > LATEST:
        raise ConfigurationError(
            f"the PostgreSQL schema {schema!r} is at version {found}, but this sessionward "
            f"knows versions up to {LATEST}: upgrade sessionward"
        )
