"""What every backend must do for the capacity monitor: activity counts, instance samples."""

from __future__ import annotations

import json

from ..clock import FakeClock
from ..ward import Ward
from .conformance import TOUCH, WardFixtures

WINDOW = 300.0


class CapacityConformance(WardFixtures):
    async def test_active_counts_live_sessions_and_distinct_users(self, ward: Ward) -> None:
        assert (await ward.store.count_active(WINDOW)).sessions == 0
        for user in ("alice", "alice", "bob"):
            await ward.sessions.create(user)
        counts = await ward.store.count_active(WINDOW)
        assert (counts.sessions, counts.users) == (3, 2)

    async def test_a_revoked_session_is_not_active(self, ward: Ward) -> None:
        await ward.sessions.create("alice")
        gone = await ward.sessions.create("bob")
        await ward.sessions.revoke("bob", gone.session.session_id)
        counts = await ward.store.count_active(WINDOW)
        assert (counts.sessions, counts.users) == (1, 1)

    async def test_activity_leaves_the_window_and_a_touch_brings_it_back(
        self, ward: Ward, clock: FakeClock
    ) -> None:
        idle = await ward.sessions.create("alice")
        busy = await ward.sessions.create("bob")
        clock.advance(WINDOW - TOUCH / 2)
        await ward.sessions.validate(busy.token)  # a touch is due: last seen moves to now
        clock.advance(TOUCH)
        counts = await ward.store.count_active(WINDOW)
        assert (counts.sessions, counts.users, counts.now) == (1, 1, clock.now())
        await ward.sessions.validate(idle.token)
        assert (await ward.store.count_active(WINDOW)).users == 2

    async def test_instances_publish_replace_and_expire(self, ward: Ward, clock: FakeClock) -> None:
        await ward.store.publish_instance("b", json.dumps({"n": 1}), ttl=15)
        await ward.store.publish_instance("a", json.dumps({"n": 1}), ttl=15)
        clock.advance(10)
        await ward.store.publish_instance("a", json.dumps({"n": 2}), ttl=15)
        rows = await ward.store.list_instances()
        assert [(r.instance_id, json.loads(r.data)["n"]) for r in rows] == [("a", 2), ("b", 1)]
        assert rows[0].expires_at == clock.now() + 15
        clock.advance(5)  # b's sample is 15 s old: expired
        assert [r.instance_id for r in await ward.store.list_instances()] == ["a"]
        await ward.store.publish_instance("c", "{}", ttl=15)
        clock.advance(15)
        assert await ward.store.list_instances() == []
