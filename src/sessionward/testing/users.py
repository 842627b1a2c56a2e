"""Store conformance for users and refresh rotation (the protocol level)."""

from __future__ import annotations

from functools import partial

import pytest

from ..clock import FakeClock
from ..stores.protocols import Store
from ..stores.records import (
    ById,
    ByToken,
    NewSessionRow,
    NewUserRow,
    SessionRow,
    StateScope,
    UserChange,
)
from ..ward import Ward
from .conformance import IDLE, WardFixtures
from .races import race

GRACE = 10.0


def new_user(name: str, password_hash: str = "h1") -> NewUserRow:
    return NewUserRow(f"id-{name}", name, name.lower(), password_hash, ("user",))


async def new_session(store: Store, user: str, token_hash: str) -> SessionRow:
    row = NewSessionRow(f"sid-{token_hash}", user, token_hash, IDLE, 43200, None, None, "{}")
    created = await store.create_session(row, max_sessions=100, evict_oldest=True)
    assert created.row is not None
    return created.row


class UserConformance(WardFixtures):
    async def test_create_and_find(self, ward: Ward, clock: FakeClock) -> None:
        row = await ward.store.create_user(new_user("Alice"))
        assert row is not None
        assert (row.username, row.username_key, row.roles, row.disabled) == (
            "Alice", "alice", ("user",), False,
        )  # fmt: skip
        assert row.created_at == row.updated_at == clock.now()
        assert await ward.store.get_user("id-Alice") == row
        assert await ward.store.find_user("alice") == row
        assert await ward.store.find_user("bob") is None
        assert await ward.store.get_user("id-bob") is None

    async def test_usernames_are_unique(self, ward: Ward) -> None:
        assert await ward.store.create_user(new_user("alice")) is not None
        taken = NewUserRow("id-other", "ALICE", "alice", "h", ())
        assert await ward.store.create_user(taken) is None
        assert (await ward.store.find_user("alice")).user_id == "id-alice"  # type: ignore[union-attr]

    async def test_list_in_order_with_pages(self, ward: Ward) -> None:
        for name in ["carol", "alice", "dave", "bob"]:
            await ward.store.create_user(new_user(name))
        first = await ward.store.list_users(after=None, limit=3)
        assert [u.username for u in first] == ["alice", "bob", "carol"]
        rest = await ward.store.list_users(after=first[-1].username_key, limit=3)
        assert [u.username for u in rest] == ["dave"]

    async def test_update(self, ward: Ward, clock: FakeClock) -> None:
        await ward.store.create_user(new_user("alice", "h1"))
        clock.advance(5)
        stale = UserChange(password_hash="h3", expected_hash="nope")
        assert await ward.store.update_user("id-alice", stale) is None
        changed = await ward.store.update_user(
            "id-alice", UserChange(password_hash="h2", expected_hash="h1")
        )
        assert changed is not None and changed.password_hash == "h2"
        assert changed.updated_at == clock.now() != changed.created_at
        disabled = await ward.store.update_user(
            "id-alice", UserChange(disabled=True, roles=("admin",))
        )
        assert disabled is not None
        assert (disabled.disabled, disabled.roles, disabled.password_hash) == (
            True, ("admin",), "h2",
        )  # fmt: skip
        assert await ward.store.get_user("id-alice") == disabled
        assert await ward.store.update_user("id-nobody", UserChange(disabled=True)) is None

    async def test_one_of_many_concurrent_registrations_wins(self, ward: Ward) -> None:
        rows = [NewUserRow(f"id-{n}", f"Alice{n}"[:5], "alice", "h", ()) for n in range(20)]
        outcomes = await race([partial(ward.store.create_user, row) for row in rows])
        assert len([o for o in outcomes if o is not None]) == 1
        assert len(await ward.store.list_users(after=None, limit=100)) == 1


class RefreshConformance(WardFixtures):
    async def test_rotation_spends_the_old_hash(self, ward: Ward, clock: FakeClock) -> None:
        await new_session(ward.store, "alice", "t0")
        clock.advance(3)
        done = await ward.store.refresh_session("t0", "t1", grace=GRACE)
        assert done.outcome == "rotated" and done.row is not None
        assert (done.row.token_hash, done.row.prev_token_hash) == ("t1", "t0")
        assert done.row.rotated_at == done.row.last_seen_at == clock.now()
        assert done.row.generation == 2
        assert (await ward.store.find_session(ByToken("t0"), touch_interval=None)).row is None
        found = await ward.store.find_session(ByToken("t1"), touch_interval=None)
        assert found.row is not None

    async def test_replay_within_grace_changes_nothing(self, ward: Ward, clock: FakeClock) -> None:
        await new_session(ward.store, "alice", "t0")
        rotated = await ward.store.refresh_session("t0", "t1", grace=GRACE)
        clock.advance(GRACE)
        replay = await ward.store.refresh_session("t0", "t1", grace=GRACE)
        assert replay.outcome == "replayed"
        assert replay.row == rotated.row

    @pytest.mark.parametrize("case", ["late", "other-successor", "older"])
    async def test_reuse_revokes_the_session(self, ward: Ward, clock: FakeClock, case: str) -> None:
        row = await new_session(ward.store, "alice", "t0")
        await ward.store.put_state(_scope(row), "doc", "1", expected_version=None)
        await ward.store.refresh_session("t0", "t1", grace=GRACE)
        spent, successor = "t0", "t1"
        if case == "late":
            clock.advance(GRACE + 0.001)
        elif case == "other-successor":
            successor = "tX"
        else:
            await ward.store.refresh_session("t1", "t2", grace=GRACE)
        reused = await ward.store.refresh_session(spent, successor, grace=GRACE)
        assert reused.outcome == "reused"
        assert reused.row is not None and reused.row.revoked_at == clock.now()
        assert await ward.store.list_state(_scope(row)) == []
        again = await ward.store.refresh_session(spent, successor, grace=GRACE)
        assert again.outcome == "reused" and again.row is not None  # stays revoked
        assert again.row.revoked_at == reused.row.revoked_at

    async def test_cookie_rotation_spends_too(self, ward: Ward) -> None:
        row = await new_session(ward.store, "alice", "t0")
        await ward.store.rotate_session(ById("alice", row.session_id), "t1")
        assert (await ward.store.refresh_session("t0", "tX", grace=GRACE)).outcome == "reused"

    async def test_unknown_and_dead(self, ward: Ward, clock: FakeClock) -> None:
        assert (await ward.store.refresh_session("nope", "t1", grace=GRACE)).outcome == "unknown"
        row = await new_session(ward.store, "alice", "t0")
        await ward.store.revoke_session(ById("alice", row.session_id))
        dead = await ward.store.refresh_session("t0", "t1", grace=GRACE)
        assert dead.outcome == "dead" and dead.row is not None and dead.row.revoked_at

    async def test_spent_hashes_go_with_the_session(self, ward: Ward, clock: FakeClock) -> None:
        await new_session(ward.store, "alice", "t0")
        await ward.store.refresh_session("t0", "t1", grace=GRACE)
        clock.advance(IDLE)
        await ward.store.sweep_sessions(100)
        assert (await ward.store.refresh_session("t0", "t1", grace=GRACE)).outcome == "unknown"

    async def test_parallel_refreshes_get_one_successor(self, ward: Ward) -> None:
        await new_session(ward.store, "alice", "t0")
        outcomes = await race([partial(ward.store.refresh_session, "t0", "t1", grace=GRACE)] * 10)
        assert sorted(o.outcome for o in outcomes) == ["replayed"] * 9 + ["rotated"]
        assert {o.row.token_hash for o in outcomes} == {"t1"}

    async def test_parallel_refreshes_with_other_successors_revoke(self, ward: Ward) -> None:
        await new_session(ward.store, "alice", "t0")
        calls = [
            partial(ward.store.refresh_session, "t0", f"t{n}", grace=GRACE) for n in range(1, 9)
        ]
        outcomes = sorted(o.outcome for o in await race(calls))
        assert outcomes == ["reused"] * 7 + ["rotated"]
        found = await ward.store.find_session(ById("alice", "sid-t0"), touch_interval=None)
        assert found.row is not None and found.row.revoked_at is not None


def _scope(row: SessionRow) -> StateScope:
    return StateScope("session", row.user_id, row.session_id)
