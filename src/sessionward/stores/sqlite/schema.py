"""The SQLite schema and its forward migrations.

``migrate`` runs inside ``BEGIN IMMEDIATE``, so several processes opening one file at once
apply each migration exactly once. Append migrations; never edit a released one.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE sw_sessions (
            session_id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            last_seen_at REAL NOT NULL,
            idle_timeout REAL NOT NULL,
            idle_expires_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            revoked_at REAL,
            ip TEXT,
            user_agent TEXT,
            metadata TEXT NOT NULL,
            generation INTEGER NOT NULL
        )""",
        "CREATE INDEX sw_sessions_user ON sw_sessions (user_id, created_at)",
        "CREATE INDEX sw_sessions_idle_expiry ON sw_sessions (idle_expires_at)",
        """CREATE TABLE sw_state (
            kind TEXT NOT NULL,
            user_id TEXT NOT NULL,
            owner_id TEXT NOT NULL,
            name TEXT NOT NULL,
            data TEXT NOT NULL,
            version INTEGER NOT NULL,
            PRIMARY KEY (kind, user_id, owner_id, name)
        ) WITHOUT ROWID""",
    ],
    [
        "ALTER TABLE sw_sessions ADD COLUMN prev_token_hash TEXT",
        "ALTER TABLE sw_sessions ADD COLUMN rotated_at REAL",
        """CREATE TABLE sw_spent_tokens (
            token_hash TEXT PRIMARY KEY,
            session_id TEXT NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX sw_spent_tokens_session ON sw_spent_tokens (session_id)",
        """CREATE TABLE sw_users (
            user_id TEXT PRIMARY KEY,
            username TEXT NOT NULL,
            username_key TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            roles TEXT NOT NULL,
            disabled INTEGER NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE sw_limits (
            key TEXT PRIMARY KEY,
            tat REAL NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX sw_limits_tat ON sw_limits (tat)",
    ],
    [
        """CREATE TABLE sw_budgets (
            user_id TEXT NOT NULL,
            session_id TEXT NOT NULL,
            budget_limit INTEGER NOT NULL,
            spent INTEGER NOT NULL,
            held INTEGER NOT NULL,
            currency TEXT NOT NULL,
            PRIMARY KEY (user_id, session_id),
            CHECK (spent >= 0 AND held >= 0 AND spent + held <= budget_limit)
        ) WITHOUT ROWID""",
        """CREATE TABLE sw_user_budgets (
            user_id TEXT PRIMARY KEY,
            budget_limit INTEGER NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE sw_ledger (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            entry_id TEXT NOT NULL UNIQUE,
            user_id TEXT NOT NULL,
            session_id TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('charge', 'refund')),
            amount INTEGER NOT NULL,
            idempotency_key TEXT,
            description TEXT NOT NULL,
            created_at REAL NOT NULL,
            refund_of TEXT UNIQUE
        )""",
        """CREATE UNIQUE INDEX sw_ledger_key ON sw_ledger (user_id, session_id, idempotency_key)
           WHERE idempotency_key IS NOT NULL""",
        "CREATE INDEX sw_ledger_session ON sw_ledger (user_id, session_id, seq)",
        """CREATE TABLE sw_holds (
            hold_id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            session_id TEXT NOT NULL,
            amount INTEGER NOT NULL,
            expires_at REAL NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX sw_holds_session ON sw_holds (user_id, session_id)",
        "CREATE INDEX sw_holds_expiry ON sw_holds (expires_at)",
    ],
    [
        """CREATE TABLE sw_jobs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT NOT NULL UNIQUE,
            user_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            params TEXT NOT NULL,
            status TEXT NOT NULL,
            progress REAL NOT NULL,
            message TEXT NOT NULL,
            result TEXT,
            error TEXT,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            attempts INTEGER NOT NULL,
            max_attempts INTEGER NOT NULL,
            worker_id TEXT,
            lease_expires_at REAL
        )""",
        "CREATE INDEX sw_jobs_waiting ON sw_jobs (status, seq)",
        "CREATE INDEX sw_jobs_user ON sw_jobs (user_id, seq)",
        "CREATE INDEX sw_jobs_lease ON sw_jobs (lease_expires_at)"
        " WHERE lease_expires_at IS NOT NULL",
        "CREATE INDEX sw_jobs_finished ON sw_jobs (finished_at) WHERE finished_at IS NOT NULL",
    ],
    # a claim's turns: each waiting user's latest start
    ["CREATE INDEX sw_jobs_user_started ON sw_jobs (user_id, started_at)"],
    # the capacity monitor: each instance's latest sample
    [
        """CREATE TABLE sw_instances (
            instance_id TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            expires_at REAL NOT NULL
        ) WITHOUT ROWID""",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the file to the current schema; return the version it was at."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS sw_schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT max(version) FROM sw_schema_version").fetchone()
        found = int(row[0] or 0)
        if found > SCHEMA_VERSION:
            raise RuntimeError(
                f"the database is at schema version {found}, newer than this sessionward "
                f"({SCHEMA_VERSION}); upgrade sessionward"
            )
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version - 1]:
                conn.execute(statement)
            conn.execute("INSERT INTO sw_schema_version (version) VALUES (?)", (version,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found
