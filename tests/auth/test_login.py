"""Accounts, login, access tokens and sessions together, on every backend."""

from __future__ import annotations

import pytest

from sessionward import (
    FakeClock,
    InvalidArgument,
    InvalidCredentials,
    InvalidToken,
    SessionRevoked,
    UsernameTaken,
)
from sessionward.ward import Ward

from .conftest import auth_settings

pytestmark = pytest.mark.anyio
PASSWORD = "correct horse battery"


async def test_register_login_use_logout(ward: Ward) -> None:
    user = await ward.auth.register("Alice", PASSWORD)
    pair = await ward.auth.login("alice", PASSWORD, ip="203.0.113.9", user_agent="curl/8")
    principal = await ward.auth.authenticate(pair.access_token)
    assert (principal.user_id, principal.session.session_id) == (user.user_id, pair.session_id)
    assert principal.session.ip == "203.0.113.9"
    assert pair.expires_in == ward.settings.access_token_ttl and pair.token_type == "bearer"
    assert pair.access_token not in repr(pair) and pair.refresh_token not in repr(pair)
    await ward.auth.logout(principal)
    with pytest.raises(SessionRevoked):  # at once, long before the token expires
        await ward.auth.authenticate(pair.access_token)


async def test_usernames_are_unique_ignoring_case(ward: Ward) -> None:
    await ward.auth.register("alice", PASSWORD)
    with pytest.raises(UsernameTaken):
        await ward.auth.register("ALICE", PASSWORD)


@pytest.mark.parametrize(
    ("username", "password"),
    [("al", PASSWORD), ("a" * 65, PASSWORD), ("al ice", PASSWORD), ("alice", "short"),
     ("alice", "x" * 1025), ("ålice", PASSWORD), ("alice", "\ud800" * 12)],
)  # fmt: skip
async def test_bad_registrations(ward: Ward, username: str, password: str) -> None:
    with pytest.raises(InvalidArgument):
        await ward.auth.register(username, password)


@pytest.mark.parametrize("who", ["unknown", "wrong-password", "disabled"])
async def test_bad_logins_look_alike(ward: Ward, who: str) -> None:
    user = await ward.auth.register("alice", PASSWORD)
    if who == "disabled":
        await ward.users.set_disabled(user.user_id)
    name = "bob" if who == "unknown" else "alice"
    password = "wrong password!" if who == "wrong-password" else PASSWORD
    calls: list[str | None] = []
    real = ward.passwords.verify

    async def counting(password_hash: str | None, given: str) -> object:
        calls.append(password_hash)
        return await real(password_hash, given)

    ward.passwords.verify = counting  # type: ignore[method-assign]
    with pytest.raises(InvalidCredentials) as caught:
        await ward.auth.login(name, password)
    assert str(caught.value) == "invalid username or password"
    assert len(calls) == 1  # one argon2 verification whoever it is: no timing oracle


async def test_a_password_is_checked_exactly_as_given(ward: Ward) -> None:
    """Never truncated, never case-folded (ASVS 6.2.8): the longest password plus one more
    character is a wrong password, not the same one."""
    longest = "p" * 1023 + "q"
    await ward.auth.register("alice", longest)
    assert (await ward.auth.login("alice", longest)).access_token
    for wrong in (longest + "x", longest.upper(), longest[:-1]):
        with pytest.raises(InvalidCredentials):
            await ward.auth.login("alice", wrong)


async def test_disabling_a_user_ends_their_sessions(ward: Ward) -> None:
    user = await ward.auth.register("alice", PASSWORD)
    pair = await ward.auth.login("alice", PASSWORD)
    await ward.users.set_disabled(user.user_id)
    with pytest.raises(SessionRevoked):
        await ward.auth.authenticate(pair.access_token)
    await ward.users.set_disabled(user.user_id, False)
    await ward.auth.login("alice", PASSWORD)


async def test_changing_the_password_ends_the_other_sessions(ward: Ward) -> None:
    await ward.auth.register("alice", PASSWORD)
    here = await ward.auth.login("alice", PASSWORD)
    there = await ward.auth.login("alice", PASSWORD)
    principal = await ward.auth.authenticate(here.access_token)
    with pytest.raises(InvalidCredentials):
        await ward.auth.change_password(principal, "not the password", "another long one")
    await ward.auth.change_password(principal, PASSWORD, "another long one")
    await ward.auth.authenticate(here.access_token)
    with pytest.raises(SessionRevoked):
        await ward.auth.authenticate(there.access_token)
    with pytest.raises(InvalidCredentials):
        await ward.auth.login("alice", PASSWORD)
    await ward.auth.login("alice", "another long one")


async def test_password_is_rehashed_when_parameters_change(ward: Ward, clock: FakeClock) -> None:
    user = await ward.auth.register("alice", PASSWORD)
    before = await ward.store.get_user(user.user_id)
    other = Ward(ward.store, auth_settings(argon2_time_cost=2), clock)  # same store, new costs
    await other.auth.login("alice", PASSWORD)
    after = await other.store.get_user(user.user_id)
    assert before is not None and after is not None
    assert "t=1" in before.password_hash and "t=2" in after.password_hash
    assert after.password_hash.startswith("$argon2id$")
    await ward.auth.login("alice", PASSWORD)  # the new hash still verifies


async def test_access_tokens_expire_by_the_clock(ward: Ward, clock: FakeClock) -> None:
    await ward.auth.register("alice", PASSWORD)
    pair = await ward.auth.login("alice", PASSWORD)
    clock.advance(ward.settings.access_token_ttl + 4)  # within the 5 s leeway
    await ward.auth.authenticate(pair.access_token)
    clock.advance(1)
    with pytest.raises(InvalidToken, match="expired"):
        await ward.auth.authenticate(pair.access_token)
