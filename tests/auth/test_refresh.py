"""Refresh tokens: rotated on every use; a parallel refresh within the grace window gets the
same pair; any other reuse of a spent token revokes the session."""

from __future__ import annotations

from functools import partial

import pytest

from sessionward import FakeClock, InvalidToken, RefreshTokenReused, SessionRevoked
from sessionward.auth import TokenPair
from sessionward.testing.races import race
from sessionward.ward import Ward

from .conftest import auth_settings

pytestmark = pytest.mark.anyio
PASSWORD = "correct horse battery"


async def logged_in(ward: Ward) -> TokenPair:
    await ward.auth.register("alice", PASSWORD)
    return await ward.auth.login("alice", PASSWORD)


async def test_refresh_rotates(ward: Ward, clock: FakeClock) -> None:
    first = await logged_in(ward)
    clock.advance(60)
    second = await ward.auth.refresh(first.refresh_token)
    assert second.session_id == first.session_id
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    principal = await ward.auth.authenticate(second.access_token)
    assert principal.claims.issued_at == int(clock.now())
    third = await ward.auth.refresh(second.refresh_token)
    await ward.auth.authenticate(third.access_token)


async def test_a_replay_within_grace_gets_the_same_pair(ward: Ward, clock: FakeClock) -> None:
    first = await logged_in(ward)
    second = await ward.auth.refresh(first.refresh_token)
    clock.advance(ward.settings.refresh_grace)
    assert await ward.auth.refresh(first.refresh_token) == second
    await ward.auth.authenticate(second.access_token)


async def test_parallel_refreshes_get_the_same_pair(ward: Ward) -> None:
    first = await logged_in(ward)
    pairs = await race([partial(ward.auth.refresh, first.refresh_token)] * 8)
    assert not [p for p in pairs if isinstance(p, Exception)]
    assert len(set(pairs)) == 1
    await ward.auth.authenticate(pairs[0].access_token)


async def test_reuse_after_grace_revokes_the_session(ward: Ward, clock: FakeClock) -> None:
    first = await logged_in(ward)
    second = await ward.auth.refresh(first.refresh_token)
    clock.advance(ward.settings.refresh_grace + 1)
    with pytest.raises(RefreshTokenReused):
        await ward.auth.refresh(first.refresh_token)
    with pytest.raises(SessionRevoked):
        await ward.auth.authenticate(second.access_token)
    with pytest.raises(InvalidToken):
        await ward.auth.refresh(second.refresh_token)


async def test_reuse_of_an_older_token_revokes(ward: Ward) -> None:
    first = await logged_in(ward)
    second = await ward.auth.refresh(first.refresh_token)
    third = await ward.auth.refresh(second.refresh_token)
    with pytest.raises(RefreshTokenReused):
        await ward.auth.refresh(first.refresh_token)
    with pytest.raises(SessionRevoked):
        await ward.auth.authenticate(third.access_token)


@pytest.mark.parametrize("token", ["", "nope", "x" * 600])
async def test_unknown_refresh_tokens(ward: Ward, token: str) -> None:
    await logged_in(ward)
    with pytest.raises(InvalidToken):
        await ward.auth.refresh(token)


async def test_logged_out_and_expired_sessions_cannot_refresh(ward: Ward, clock: FakeClock) -> None:
    pair = await logged_in(ward)
    await ward.auth.logout(await ward.auth.authenticate(pair.access_token))
    with pytest.raises(InvalidToken, match="revoked"):
        await ward.auth.refresh(pair.refresh_token)
    other = await ward.auth.login("alice", PASSWORD)
    clock.advance(ward.settings.session_idle_timeout)
    with pytest.raises(InvalidToken, match="inactivity"):
        await ward.auth.refresh(other.refresh_token)


async def test_refresh_tokens_have_an_absolute_lifetime(store_url: str, clock: FakeClock) -> None:
    from sessionward import open_ward

    settings = auth_settings(refresh_token_ttl=3600, session_idle_timeout=1800)
    async with open_ward(store_url, settings=settings, clock=clock, sweep=False) as ward:
        pair = await logged_in(ward)
        for _ in range(3):
            clock.advance(1000)
            pair = await ward.auth.refresh(pair.refresh_token)
        clock.advance(700)  # 3700 s after login
        with pytest.raises(InvalidToken, match="expired"):
            await ward.auth.refresh(pair.refresh_token)
