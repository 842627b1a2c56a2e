"""Brute-force protection: counted before the password check, given back on success,
temporary locks that double on repeat, per account (known or not) and per client IP."""

from __future__ import annotations

from functools import partial

import anyio
import pytest

from sessionward import AccountLocked, FakeClock, InvalidCredentials, open_ward
from sessionward.testing.races import race, run_in_processes
from sessionward.ward import Ward

from .conftest import auth_settings

pytestmark = pytest.mark.anyio
PASSWORD = "correct horse battery"
WRONG = "not the password"


def count_verifications(ward: Ward) -> list[int]:
    calls = [0]
    real = ward.passwords.verify

    async def counting(password_hash: str | None, given: str) -> object:
        calls[0] += 1
        return await real(password_hash, given)

    ward.passwords.verify = counting  # type: ignore[method-assign]
    return calls


async def test_nth_failure_is_401_then_locked(ward: Ward, clock: FakeClock) -> None:
    await ward.auth.register("alice", PASSWORD)
    for _ in range(ward.settings.login_max_failures):
        with pytest.raises(InvalidCredentials):
            await ward.auth.login("alice", WRONG)
    with pytest.raises(AccountLocked) as locked:
        await ward.auth.login("alice", PASSWORD)  # whatever the password
    assert locked.value.retry_after == ward.settings.login_lockout
    clock.advance(ward.settings.login_lockout - 1)
    with pytest.raises(AccountLocked) as still:
        await ward.auth.login("alice", PASSWORD)
    assert still.value.retry_after == pytest.approx(1)
    clock.advance(1)
    await ward.auth.login("alice", PASSWORD)


async def test_locks_double_on_repeat_up_to_the_cap(store_url: str, clock: FakeClock) -> None:
    settings = auth_settings(login_max_failures=2, login_lockout=100, login_lockout_max=350)
    async with open_ward(store_url, settings=settings, clock=clock, sweep=False) as ward:
        seen = []
        for _ in range(4):
            for _ in range(2):
                with pytest.raises(InvalidCredentials):
                    await ward.auth.login("alice", WRONG)
            with pytest.raises(AccountLocked) as locked:
                await ward.auth.login("alice", WRONG)
            seen.append(locked.value.retry_after)
            clock.advance(locked.value.retry_after + settings.login_failure_window)
        assert seen == [100, 200, 350, 350]


async def test_success_resets_the_count(ward: Ward) -> None:
    await ward.auth.register("alice", PASSWORD)
    for _ in range(3):
        for _ in range(ward.settings.login_max_failures - 1):
            with pytest.raises(InvalidCredentials):
                await ward.auth.login("alice", WRONG)
        await ward.auth.login("alice", PASSWORD)


async def test_unknown_usernames_lock_alike(ward: Ward) -> None:
    for _ in range(ward.settings.login_max_failures):
        with pytest.raises(InvalidCredentials):
            await ward.auth.login("nobody", WRONG)
    with pytest.raises(AccountLocked):
        await ward.auth.login("nobody", WRONG)
    with pytest.raises(AccountLocked):
        await ward.auth.login("NoBody", WRONG)  # the same account, ignoring case


async def test_parallel_guesses_cost_at_most_max_failures_checks(ward: Ward) -> None:
    await ward.auth.register("alice", PASSWORD)
    calls = count_verifications(ward)
    outcomes = await race([partial(ward.auth.login, "alice", WRONG)] * 100)
    n = ward.settings.login_max_failures
    assert calls[0] <= n
    assert sum(isinstance(o, InvalidCredentials) for o in outcomes) == calls[0]
    assert sum(isinstance(o, AccountLocked) for o in outcomes) == 100 - calls[0]
    with pytest.raises(AccountLocked):
        await ward.auth.login("alice", PASSWORD)


async def test_per_ip_limit(store_url: str, clock: FakeClock) -> None:
    settings = auth_settings(login_ip_max_failures=3)
    async with open_ward(store_url, settings=settings, clock=clock, sweep=False) as ward:
        for name in ("a1", "a2", "a3"):  # three accounts, one address
            with pytest.raises(InvalidCredentials):
                await ward.auth.login(name, WRONG, ip="203.0.113.9")
        with pytest.raises(AccountLocked) as caught:
            await ward.auth.login("a4", WRONG, ip="203.0.113.9")
        assert 0 < caught.value.retry_after <= settings.login_failure_window / 3
        with pytest.raises(InvalidCredentials):
            await ward.auth.login("a4", WRONG, ip="198.51.100.7")


@pytest.mark.parametrize("ip", [None, "", "not an address"])
async def test_logins_without_a_usable_address_share_one_ip_count(
    store_url: str, clock: FakeClock, ip: str | None
) -> None:
    settings = auth_settings(login_ip_max_failures=2)
    async with open_ward(store_url, settings=settings, clock=clock, sweep=False) as ward:
        for name in ("a1", "a2"):
            with pytest.raises(InvalidCredentials):
                await ward.auth.login(name, WRONG, ip=ip)
        with pytest.raises(AccountLocked):
            await ward.auth.login("a3", WRONG, ip=ip)
        with pytest.raises(InvalidCredentials):  # a known address has its own count
            await ward.auth.login("a3", WRONG, ip="198.51.100.7")


async def test_never_more_than_100_failures_an_hour(store_url: str, clock: FakeClock) -> None:
    lax = auth_settings(login_max_failures=100, login_failure_window=60, login_lockout=60)
    async with open_ward(store_url, settings=lax, clock=clock, sweep=False) as ward:
        failures, started = 0, clock.now()
        while clock.now() < started + 3600:
            try:
                await ward.auth.login("alice", WRONG)
            except InvalidCredentials:
                failures += 1
            except AccountLocked as locked:
                clock.advance(max(locked.retry_after, 1))
        assert 50 < failures <= 100  # it was 152 with a burst-100 hourly counter


async def _guess(url: str, n: int, barrier: object) -> int:
    settings = auth_settings()
    async with open_ward(url, settings=settings, sweep=False) as ward:
        calls = count_verifications(ward)
        await anyio.to_thread.run_sync(barrier.wait)  # type: ignore[attr-defined]
        await race([partial(ward.auth.login, "alice", WRONG)] * n)
    return calls[0]


@pytest.mark.parametrize("backend", ["sqlite", "redis", "postgresql"], indirect=True)
async def test_guesses_from_four_processes(store_url: str) -> None:
    async with open_ward(store_url, settings=auth_settings(), sweep=False) as ward:
        await ward.auth.register("alice", PASSWORD)
        checks = await run_in_processes([(_guess, (store_url, 25))] * 4)
        assert sum(checks) <= ward.settings.login_max_failures
        with pytest.raises(AccountLocked):
            await ward.auth.login("alice", PASSWORD)
