"""Checks shared by the fault tests: limits and budgets exact after a fault, the outage's
figures, and a service whose log shows no traceback."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import httpx

from sessionward import open_ward
from sessionward.testing import wait_until
from tests.reliability.traffic import History, Member, sign_up
from tests.service.server import Server

RECOVERY = 2.0  # seconds from the store answering again to the first success


def limits_exact(store_url: str, key: str, hits: int = 40, allowed: int = 10) -> None:
    """``hits`` concurrent hits on a fresh ``allowed``/hour key: exactly ``allowed`` pass."""

    async def run() -> list[bool]:
        async with open_ward(store_url, sweep=False) as ward:
            results: list[bool] = []

            async def one() -> None:
                results.append((await ward.limits.hit(key, f"{allowed}/hour")).allowed)

            async with anyio.create_task_group() as tasks:
                for _ in range(hits):
                    tasks.start_soon(one)
            return results

    results = anyio.run(run)
    assert sum(results) == allowed, f"{sum(results)} of {hits} hits allowed, not {allowed}"


def budget_exact(url: str, name: str, budget: int, parts: int = 8) -> None:
    """``parts`` concurrent charges of a quarter of the budget each: exactly 4 pass."""
    member = sign_up(url, name)
    amount = budget // 4

    def charge(n: int) -> int:
        with httpx.Client(base_url=url, timeout=30) as client:
            body = {"amount": amount, "idempotency_key": f"exact-{n}"}
            return client.post("/v1/budget/charges", json=body, headers=member.auth).status_code

    with ThreadPoolExecutor(parts) as pool:
        statuses = sorted(pool.map(charge, range(parts)))
    assert statuses == [201] * 4 + [402] * (parts - 4), statuses
    with httpx.Client(base_url=url, timeout=30) as client:
        spent = client.get("/v1/budget", headers=member.auth).json()["spent"]
    assert spent == 4 * amount


def outage_figures(history: History, down: float, up: float) -> dict[str, Any]:
    """What the requests saw while the store was down, and how soon they succeeded again."""
    during = history.between(down, up)
    recovery = history.recovery(up)
    return {
        "outage_s": round(up - down, 3),
        "during": history.summary(during),
        # answered from memory (an in-process cache) or just as the store came back
        "ok_during": dict(Counter(op.kind for op in during if op.ok)),
        "ok_last_ended_s": max((round(op.ended - down, 3) for op in during if op.ok), default=None),
        "recovery_s": None if recovery is None else round(recovery, 3),
    }


def assert_only_unavailable(history: History, down: float, up: float) -> None:
    """While the store was down, every failure was 503 ``store_unavailable`` with
    Retry-After (the traffic itself flags any other 5xx)."""
    for op in history.between(down, up):
        if not op.ok:
            assert (op.status, op.code) == (503, "store_unavailable"), op
            assert op.retry_after is not None and int(op.retry_after) >= 1, op


def clean_log(server: Server) -> None:
    log = server.log.read_text()
    assert "Traceback" not in log and "internal_error" not in log, log[-3000:]


def members(url: str, prefix: str, count: int) -> list[Member]:
    return [sign_up(url, f"{prefix}{n}") for n in range(count)]


def hold(seconds: float, history: History, *, failures: int = 1) -> None:
    """Keep a fault on for ``seconds`` and until the traffic has met it ``failures`` times
    (polled with a deadline, so the outage is never shorter than asked)."""
    began = time.monotonic()

    def over() -> bool:
        met = sum(not op.ok for op in history.between(began, float("inf")))
        return time.monotonic() >= began + seconds and met >= failures

    wait_until(over, timeout=seconds + 30, what="the traffic to meet the fault", interval=0.01)
