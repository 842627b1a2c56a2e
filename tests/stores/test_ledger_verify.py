"""``verify()`` finds totals that disagree with the ledger on SQLite and PostgreSQL (the Redis
case is in test_redis_ledger.py), and ``sessionward doctor`` reports it and exits 1."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from sessionward import Settings, open_ward
from sessionward.stores.records import LedgerProblem
from tests.conftest import url_for
from tests.e2e.test_cli import sw

pytestmark = pytest.mark.anyio
SETTINGS = Settings(budget_default=1000)


async def _charged(url: str) -> tuple[str, str]:
    async with open_ward(url, settings=SETTINGS, sweep=False) as ward:
        new = await ward.sessions.create("alice")
        await ward.budgets.charge(new.session, 250, "c1")
        await ward.budgets.reserve(new.session, 100)
        assert await ward.budgets.verify() == []
        return "alice", new.session.session_id


async def _problems(url: str) -> list[LedgerProblem]:
    async with open_ward(url, settings=SETTINGS, sweep=False) as ward:
        return await ward.budgets.verify()


async def test_sqlite_verify_finds_totals_that_disagree(tmp_path: Path) -> None:
    url = url_for("sqlite", tmp_path)
    user, sid = await _charged(url)
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE sw_budgets SET spent = 251, held = 99")
    assert sorted(await _problems(url), key=repr) == [
        LedgerProblem(user, sid, "held", 99, 100),
        LedgerProblem(user, sid, "spent", 251, 250),
    ]
    done = sw("doctor", store=url, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "2 budget(s) disagree with their ledger" in done.stdout
    assert "the ledger and the budget totals disagree" in done.stderr


async def test_postgres_verify_finds_totals_that_disagree(tmp_path: Path) -> None:
    url = url_for("postgresql", tmp_path)
    user, sid = await _charged(url)
    base, schema = url.split("?")[0], url.split("schema=")[1]
    async with await psycopg.AsyncConnection.connect(base, autocommit=True) as conn:
        await conn.execute(f'UPDATE "{schema}".sw_budgets SET spent = 251')
    assert await _problems(url) == [LedgerProblem(user, sid, "spent", 251, 250)]
