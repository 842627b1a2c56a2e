"""What every backend must do, one behaviour per test, with a driven clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ..clock import FakeClock
from ..config import Settings
from ..errors import (
    InvalidArgument,
    InvalidStateData,
    InvalidStateName,
    SessionAbsoluteExpired,
    SessionIdleExpired,
    SessionLimitExceeded,
    SessionRevoked,
    StateTooLarge,
    UnknownSession,
    WriteConflict,
)
from ..sessions import NewSession
from ..ward import Ward, open_ward

IDLE = 1800.0
ABSOLUTE = 43200.0
TOUCH = 60.0
CAP = 3
MAX_BYTES = 1024


class WardFixtures:
    """A fresh Ward per test on ``store_url``, with a FakeClock."""

    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def settings(self) -> Settings:
        return Settings(
            session_idle_timeout=IDLE,
            session_absolute_timeout=ABSOLUTE,
            session_touch_interval=TOUCH,
            sessions_per_user=CAP,
            state_max_bytes=MAX_BYTES,
            sweep_batch_size=2,
        )

    @pytest.fixture
    async def ward(
        self, store_url: str, clock: FakeClock, settings: Settings
    ) -> AsyncIterator[Ward]:
        async with open_ward(store_url, settings=settings, clock=clock, sweep=False) as ward:
            yield ward


class SessionConformance(WardFixtures):
    async def test_create_records_who_and_when(self, ward: Ward, clock: FakeClock) -> None:
        new = await ward.sessions.create(
            "alice", ip="203.0.113.9", user_agent="curl/8", metadata={"plan": "pro", "n": 1}
        )
        s = new.session
        assert len(new.token) >= 43 and new.token != s.session_id
        assert (s.user_id, s.ip, s.user_agent) == ("alice", "203.0.113.9", "curl/8")
        assert dict(s.metadata) == {"plan": "pro", "n": 1}
        assert s.created_at == s.last_seen_at == clock.now()
        assert s.idle_expires_at == clock.now() + IDLE
        assert s.expires_at == clock.now() + ABSOLUTE
        assert new.token not in repr(new)

    async def test_validate_returns_the_session(self, ward: Ward) -> None:
        new = await ward.sessions.create("alice")
        assert await ward.sessions.validate(new.token) == new.session

    @pytest.mark.parametrize("token", ["", "x" * 10_000, "nope", "é\ud800"])
    async def test_unknown_tokens_are_refused(self, ward: Ward, token: str) -> None:
        await ward.sessions.create("alice")
        with pytest.raises(UnknownSession):
            await ward.sessions.validate(token)

    async def test_idle_timeout(self, ward: Ward, clock: FakeClock) -> None:
        new = await ward.sessions.create("alice")
        clock.advance(IDLE - 1)
        await ward.sessions.validate(new.token)  # touches: the idle window restarts
        clock.advance(IDLE - 1)
        await ward.sessions.validate(new.token)
        clock.advance(IDLE)
        with pytest.raises(SessionIdleExpired):
            await ward.sessions.validate(new.token)

    async def test_touch_is_throttled(self, ward: Ward, clock: FakeClock) -> None:
        new = await ward.sessions.create("alice")
        clock.advance(TOUCH - 1)
        assert (await ward.sessions.validate(new.token)).last_seen_at == new.session.created_at
        clock.advance(1)
        assert (await ward.sessions.validate(new.token)).last_seen_at == clock.now()

    async def test_absolute_timeout_wins_over_activity(self, ward: Ward, clock: FakeClock) -> None:
        new = await ward.sessions.create("alice")
        while clock.now() + IDLE / 2 < new.session.expires_at:
            clock.advance(IDLE / 2)
            session = await ward.sessions.validate(new.token)
            assert session.idle_expires_at <= session.expires_at
        clock.advance(IDLE / 2)
        with pytest.raises(SessionAbsoluteExpired):
            await ward.sessions.validate(new.token)

    async def test_get_by_public_id_checks_the_owner(self, ward: Ward) -> None:
        new = await ward.sessions.create("alice")
        assert (await ward.sessions.get("alice", new.session.session_id)).user_id == "alice"
        with pytest.raises(UnknownSession):
            await ward.sessions.get("mallory", new.session.session_id)

    async def test_rotate_replaces_the_token_and_keeps_the_record(
        self, ward: Ward, clock: FakeClock
    ) -> None:
        new = await ward.sessions.create("alice")
        await ward.state.put(new.session.scope("session"), "cart", [1])
        clock.advance(5)
        rotated = await ward.sessions.rotate(new.token)
        assert rotated.token != new.token
        assert rotated.session.session_id == new.session.session_id
        assert rotated.session.generation == new.session.generation + 1
        with pytest.raises(UnknownSession):
            await ward.sessions.validate(new.token)
        with pytest.raises(UnknownSession):
            await ward.sessions.rotate(new.token)
        session = await ward.sessions.validate(rotated.token)
        assert (await ward.state.get(session.scope("session"), "cart")) is not None

    async def test_revoke(self, ward: Ward) -> None:
        new = await ward.sessions.create("alice")
        sid = new.session.session_id
        assert not await ward.sessions.revoke("mallory", sid)
        await ward.sessions.validate(new.token)
        assert await ward.sessions.revoke("alice", sid)
        assert not await ward.sessions.revoke("alice", sid)
        with pytest.raises(SessionRevoked):
            await ward.sessions.validate(new.token)
        with pytest.raises(SessionRevoked):
            await ward.sessions.rotate(new.token)
        with pytest.raises(SessionRevoked):
            await ward.sessions.get("alice", sid)

    async def test_revoke_by_id_alone(self, ward: Ward) -> None:
        """An administrator's revoke by session id: the store finds the owner by the id."""
        mine, theirs = await ward.sessions.create("alice"), await ward.sessions.create("bob")
        sid = mine.session.session_id
        assert await ward.store.find_session_owner(sid) == "alice"
        assert await ward.store.find_session_owner(theirs.session.session_id) == "bob"
        assert await ward.store.find_session_owner("no-such-session") is None
        assert await ward.sessions.revoke_by_id(sid)
        assert not await ward.sessions.revoke_by_id(sid)  # not live any more
        for nothing in ("no-such-session", "bad\x00id", ""):
            assert not await ward.sessions.revoke_by_id(nothing)
        with pytest.raises(SessionRevoked):
            await ward.sessions.validate(mine.token)
        await ward.sessions.validate(theirs.token)

    async def test_revoked_session_state_is_gone_and_cannot_return(self, ward: Ward) -> None:
        new = await ward.sessions.create("alice")
        scope = new.session.scope("session")
        await ward.state.put(scope, "cart", [1])
        await ward.state.put(new.session.scope("user"), "prefs", 1)
        await ward.sessions.revoke("alice", new.session.session_id)
        assert await ward.state.names(scope) == []
        with pytest.raises(SessionRevoked):
            await ward.state.put(scope, "cart", [2])
        with pytest.raises(SessionRevoked):
            await ward.state.delete(scope, "cart")
        assert await ward.state.names(scope) == []
        assert await ward.state.names(new.session.scope("user")) == ["prefs"]

    async def test_revoke_all_keeps_one(self, ward: Ward, clock: FakeClock) -> None:
        sessions = [await self._create(ward, clock, "alice") for _ in range(3)]
        other = await ward.sessions.create("bob")
        keep = sessions[1].session.session_id
        assert await ward.sessions.revoke_all("alice", keep=keep) == 2
        assert [s.session_id for s in await ward.sessions.list_active("alice")] == [keep]
        await ward.sessions.validate(other.token)
        assert await ward.sessions.revoke_all("alice") == 1
        assert await ward.sessions.list_active("alice") == []

    async def test_list_active_is_own_live_oldest_first(self, ward: Ward, clock: FakeClock) -> None:
        first, second, third = [await self._create(ward, clock, "alice") for _ in range(3)]
        await ward.sessions.create("bob")
        await ward.sessions.revoke("alice", second.session.session_id)
        listed = await ward.sessions.list_active("alice")
        assert [s.session_id for s in listed] == [
            first.session.session_id,
            third.session.session_id,
        ]
        clock.advance(IDLE)
        assert await ward.sessions.list_active("alice") == []

    async def test_cap_evicts_the_oldest(self, ward: Ward, clock: FakeClock) -> None:
        made = [await self._create(ward, clock, "alice") for _ in range(CAP)]
        newest = await self._create(ward, clock, "alice")
        assert newest.evicted == (made[0].session.session_id,)
        with pytest.raises(SessionRevoked):
            await ward.sessions.validate(made[0].token)
        assert len(await ward.sessions.list_active("alice")) == CAP

    async def test_cap_can_refuse(self, store_url: str, clock: FakeClock) -> None:
        settings = Settings(sessions_per_user=2, session_limit_action="refuse")
        async with open_ward(store_url, settings=settings, clock=clock, sweep=False) as ward:
            first = await self._create(ward, clock, "alice")
            await self._create(ward, clock, "alice")
            with pytest.raises(SessionLimitExceeded):
                await ward.sessions.create("alice")
            await ward.sessions.revoke("alice", first.session.session_id)
            await ward.sessions.create("alice")

    async def test_dead_sessions_do_not_count_against_the_cap(
        self, ward: Ward, clock: FakeClock
    ) -> None:
        old = [await self._create(ward, clock, "alice") for _ in range(CAP)]
        clock.advance(IDLE)
        new = await ward.sessions.create("alice")
        assert new.evicted == ()
        with pytest.raises(SessionIdleExpired):
            await ward.sessions.validate(old[-1].token)

    async def test_sweep_deletes_dead_sessions_in_batches(
        self, ward: Ward, clock: FakeClock
    ) -> None:
        dead = [await self._create(ward, clock, f"user{n}") for n in range(5)]
        await ward.state.put(dead[0].session.scope("session"), "cart", 1)
        await ward.sessions.revoke("user1", dead[1].session.session_id)
        clock.advance(IDLE)
        live = await ward.sessions.create("carol")
        first = await ward.store.sweep_sessions(2)
        rest = await ward.sessions.sweep()
        assert await ward.sessions.sweep() == 0
        assert (first, first + rest) == (2, 5)
        for new in dead:
            with pytest.raises(UnknownSession):
                await ward.sessions.validate(new.token)
        assert await ward.state.names(dead[0].session.scope("session")) == []
        await ward.sessions.validate(live.token)

    async def test_bad_arguments(self, ward: Ward) -> None:
        with pytest.raises(InvalidArgument):
            await ward.sessions.create("")
        with pytest.raises(InvalidArgument):
            await ward.sessions.create("a\nb")
        with pytest.raises(InvalidArgument):
            await ward.sessions.create("alice", metadata={"x": float("nan")})
        with pytest.raises(InvalidArgument):
            await ward.sessions.create("alice", user_agent="a\x00b")
        with pytest.raises(InvalidArgument):
            await ward.sessions.create("alice", ip="\ud800")

    async def test_user_ids_are_opaque(self, ward: Ward) -> None:
        odd = ["{u:bob}", "bob}:s:", "ünï cödé", "a:b:c", "x" * 255]
        for user in odd:
            new = await ward.sessions.create(user)
            await ward.state.put(new.session.scope(), "doc", user)
        for user in odd:
            [session] = await ward.sessions.list_active(user)
            doc = await ward.state.get(session.scope(), "doc")
            assert doc is not None and doc.data == user

    @staticmethod
    async def _create(ward: Ward, clock: FakeClock, user: str) -> NewSession:
        clock.advance(1)  # distinct created_at, so "oldest" is well defined
        return await ward.sessions.create(user)


class StateConformance(WardFixtures):
    async def test_put_get_versions(self, ward: Ward) -> None:
        scope = (await ward.sessions.create("alice")).session.scope()
        assert await ward.state.get(scope, "doc") is None
        assert await ward.state.put(scope, "doc", {"a": [1, 2]}) == 1
        assert await ward.state.put(scope, "doc", {"a": [3]}) == 2
        doc = await ward.state.get(scope, "doc")
        assert doc is not None and (doc.data, doc.version) == ({"a": [3]}, 2)

    async def test_compare_and_set(self, ward: Ward) -> None:
        scope = (await ward.sessions.create("alice")).session.scope()
        with pytest.raises(WriteConflict) as absent:
            await ward.state.put(scope, "doc", 1, expected_version=1)
        assert absent.value.actual is None
        assert await ward.state.put(scope, "doc", 1, expected_version=0) == 1
        with pytest.raises(WriteConflict):
            await ward.state.put(scope, "doc", 2, expected_version=0)
        assert await ward.state.put(scope, "doc", 2, expected_version=1) == 2
        with pytest.raises(WriteConflict) as stale:
            await ward.state.put(scope, "doc", 3, expected_version=1)
        assert (stale.value.expected, stale.value.actual) == (1, 2)
        doc = await ward.state.get(scope, "doc")
        assert doc is not None and doc.data == 2

    async def test_delete(self, ward: Ward) -> None:
        scope = (await ward.sessions.create("alice")).session.scope()
        assert not await ward.state.delete(scope, "doc")
        await ward.state.put(scope, "doc", 1)
        await ward.state.put(scope, "doc", 2)
        with pytest.raises(WriteConflict):
            await ward.state.delete(scope, "doc", expected_version=1)
        assert await ward.state.delete(scope, "doc", expected_version=2)
        assert await ward.state.get(scope, "doc") is None
        assert await ward.state.put(scope, "doc", 3) == 1

    async def test_names_are_per_scope_and_sorted(self, ward: Ward) -> None:
        session = (await ward.sessions.create("alice")).session
        for name in ["b", "a", "c.d"]:
            await ward.state.put(session.scope(), name, name)
        await ward.state.put(session.scope("session"), "z", 1)
        assert await ward.state.names(session.scope()) == ["a", "b", "c.d"]
        assert await ward.state.names(session.scope("session")) == ["z"]

    async def test_users_and_sessions_are_isolated(self, ward: Ward) -> None:
        a1 = (await ward.sessions.create("alice")).session
        a2 = (await ward.sessions.create("alice")).session
        b = (await ward.sessions.create("bob")).session
        for n, scope in enumerate(
            [a1.scope(), a1.scope("session"), a2.scope("session"), b.scope()]
        ):
            await ward.state.put(scope, "doc", n)
        assert await self._data(ward, a2.scope(), "doc") == 0  # the user's, shared
        assert await self._data(ward, a1.scope("session"), "doc") == 1
        assert await self._data(ward, a2.scope("session"), "doc") == 2
        assert await self._data(ward, b.scope(), "doc") == 3
        assert await ward.state.names(b.scope("session")) == []

    async def test_size_limit(self, ward: Ward) -> None:
        scope = (await ward.sessions.create("alice")).session.scope()
        fits = "x" * (MAX_BYTES - 2)  # two bytes of JSON quotes
        assert await ward.state.put(scope, "doc", fits) == 1
        with pytest.raises(StateTooLarge) as too_large:
            await ward.state.put(scope, "doc", fits + "x")
        assert too_large.value.limit == MAX_BYTES
        with pytest.raises(StateTooLarge):
            await ward.state.put(scope, "doc", "é" * (MAX_BYTES // 2))

    @pytest.mark.parametrize("name", ["", "a/b", "x" * 129, "é", "a b", "../x"])
    async def test_bad_names(self, ward: Ward, name: str) -> None:
        scope = (await ward.sessions.create("alice")).session.scope()
        with pytest.raises(InvalidStateName):
            await ward.state.put(scope, name, 1)
        with pytest.raises(InvalidStateName):
            await ward.state.get(scope, name)

    @pytest.mark.parametrize("data", [float("nan"), float("inf"), "\ud800", {1: object()}])
    async def test_bad_data(self, ward: Ward, data: object) -> None:
        scope = (await ward.sessions.create("alice")).session.scope()
        with pytest.raises(InvalidStateData):
            await ward.state.put(scope, "doc", data)

    async def test_json_round_trip(self, ward: Ward) -> None:
        scope = (await ward.sessions.create("alice")).session.scope()
        data = {"emoji": "🦊", "nested": [None, True, 1.5, -2, {"k": "ü"}], "big": 2**60}
        await ward.state.put(scope, "doc", data)
        assert await self._data(ward, scope, "doc") == data

    async def test_session_state_expires_with_its_session(
        self, ward: Ward, clock: FakeClock
    ) -> None:
        new = await ward.sessions.create("alice")
        await ward.state.put(new.session.scope("session"), "cart", 1)
        clock.advance(IDLE)
        with pytest.raises(SessionIdleExpired):
            await ward.state.put(new.session.scope("session"), "cart", 2)
        assert await ward.state.get(new.session.scope("session"), "cart") is None
        assert await ward.state.names(new.session.scope("session")) == []
        await ward.sessions.sweep()
        assert await ward.state.names(new.session.scope("session")) == []

    @staticmethod
    async def _data(ward: Ward, scope: object, name: str) -> object:
        doc = await ward.state.get(scope, name)  # type: ignore[arg-type]
        assert doc is not None
        return doc.data
