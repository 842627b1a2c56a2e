"""Charges per second and p99 per backend: one task and 32 tasks, all on one session
(contending for its budget) and spread over 1,000 sessions."""

from __future__ import annotations

from sessionward import Settings, open_ward
from sessionward.sessions import Session

from .measure import Op, Result, interleaved

SESSIONS = 1000
CONCURRENT = 32


async def bench_budget(url: str, *, per_task: int) -> list[Result]:
    settings = Settings(budget_default=2**53, sessions_per_user=SESSIONS + 1)
    async with open_ward(url, settings=settings, sweep=False) as ward:
        sessions = [(await ward.sessions.create(f"payer{n % 50}")).session for n in range(SESSIONS)]
        hot = sessions[0]
        results = []
        for tasks, n in ((1, per_task), (CONCURRENT, max(per_task // 8, 50))):
            ops = _ops(ward, hot, sessions, tag=f"t{tasks}")
            results += await interleaved(ops, tasks=tasks, per_task=n)
        problems = await ward.budgets.verify()
        assert not problems, f"the books do not balance after the benchmark: {problems[:3]}"
        return results


def _ops(ward: object, hot: Session, sessions: list[Session], tag: str) -> dict[str, Op]:
    budget = ward.budgets  # type: ignore[attr-defined]

    async def one_session(i: int) -> object:
        return await budget.charge(hot, 1 + i % 50, f"{tag}-hot-{i}")

    async def spread(i: int) -> object:
        return await budget.charge(sessions[i % SESSIONS], 1 + i % 50, f"{tag}-spread-{i}")

    return {"charge, one session": one_session, "charge, 1000 sessions": spread}
