"""The PostgreSQL migrations read from ``stores/postgres/sql/*.sql`` send exactly the text
released migrations sent: a schema migrated by an older sessionward is accepted as it is,
so a released migration must never change. Editing one fails here; add a migration instead."""

from __future__ import annotations

import hashlib

from psycopg import sql

from sessionward.stores.postgres.schema import LATEST, SQL_FILES, migrations, read_sql, table_names

# sha256 of each migration's statements, formatted for the schema "sw_pin", joined by "\n\0\n".
RELEASED = {
    1: "b2f1a7d6cfcdf714b2d78767a83a463da64c340db2a68bc302a9450685ac95c2",
    2: "ec6360bf4192cd2294d9286ea294838cdd0ad0fa2ca7b3d6482c40b5a29875a6",
    3: "ae233680c84192ae0b1355a46482637514cd2defef4fe840aeaaaafa478ac8a7",
    4: "550b6e14f860b946d1df8c1603941548fbb8a84c6bbb0b011ab1102d47649569",
    5: "848788d622bd9dbcaf5ea0bfa868778cd569271a916d3fac8658dfe830e8b3d2",
    6: "fa38503cd58380abc300a60bd5d170b89ab45e98666b760e79bb0b0c6b8e1ccb",
}


def _digest(statements: tuple[str, ...]) -> str:
    names = table_names("sw_pin")
    sent = [sql.SQL(s).format(**names).as_string(None) for s in statements]
    return hashlib.sha256("\n\0\n".join(sent).encode()).hexdigest()


def test_released_migrations_send_the_text_they_always_sent() -> None:
    found = {version: _digest(m) for version, m in enumerate(migrations(), 1)}
    assert {v: d for v, d in found.items() if v in RELEASED} == RELEASED
    assert len(found) == LATEST


def test_statement_names_are_unique_within_a_file() -> None:
    for file in SQL_FILES:
        names = [s.name for s in read_sql(file)]
        assert len(names) == len(set(names)), file


def test_no_statement_keeps_its_terminator_or_a_leading_comment() -> None:
    for file in SQL_FILES:
        for statement in read_sql(file):
            assert not statement.text.rstrip().endswith(";"), statement.name
            assert not statement.text.startswith("--"), statement.name
