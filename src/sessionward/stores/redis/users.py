"""The Redis store's users (a base of :class:`~.store.RedisStore`).

A user's record lives in the user's slot (``P:{u:U}:user``); the username index
(``P:{usernames}``, username_key to user id, and ``P:{usernames}:sorted`` for ordered pages)
in another, so registration cannot be one script. It is three crash-safe steps:

1. ``user_create.lua`` writes the record and an *unclaimed* mark next to it, unless the id
   is taken (then ``None``).
2. ``user_claim.lua`` claims the username in both index keys at once. If another user owns
   it, registration fails and deletes its record and mark, unless that owner's record is
   missing: such an entry is left over (a record is always written before its claim), so
   it is taken over, compare-and-set on the stale owner.
3. The mark is deleted.

A crash after step 1 leaves a record nobody can reach: lookups by name and pages go through
the index, ``get_user`` sees the mark and finds no claim, and the username stays free. A
crash after step 2 leaves a claimed user with its mark: whoever meets the mark checks the
index, finds the claim and deletes the mark. An index entry whose record is missing reads
as absent everywhere. Users never expire.

Round trips: ``get_user`` 1 (``MGET`` of record and mark), ``find_user`` 2 (index, record),
``list_users`` 2 per page, ``update_user`` 1 (a compare-and-set script), ``create_user`` 3.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ...errors import StorageError
from ..records import NewUserRow, UserChange, UserRow
from .connection import RedisConnection
from .keys import optional, roles_json, user_from_json


class RedisUsers(RedisConnection):
    async def create_user(self, new: NewUserRow) -> UserRow | None:
        record = self._keys.account(new.user_id)
        args = [self._now(), new.user_id, new.username, new.username_key, new.password_hash]
        args.append(roles_json(new.roles))
        # not repeated: a second attempt would find the first's record and report "taken"
        reply = await self._script("user_create", record, args, idempotent=False)
        if len(reply) == 1:
            return None  # the id is taken
        if not await self._claim(new.username_key, new.user_id):
            await self._call(lambda: self._client.delete(*record))
            return None
        with contextlib.suppress(StorageError):
            # The user exists once the claim landed; a mark left behind is healed by readers.
            await self._call(lambda: self._client.delete(record[1]))
        return user_from_json(reply[1])

    async def _claim(self, username_key: str, user_id: str) -> bool:
        owner = await self._claim_as(username_key, user_id, stale="")
        if owner != user_id:
            found = await self._call(lambda: self._client.exists(self._keys.account(owner)[0]))
            if not found:
                owner = await self._claim_as(username_key, user_id, stale=owner)
        return owner == user_id

    async def _claim_as(self, username_key: str, user_id: str, *, stale: str) -> str:
        # repeatable: a claim that landed answers its own repetition with the same owner
        args = [username_key, user_id, stale]
        return str(await self._script("user_claim", self._keys.usernames(), args))

    async def _claimed(self, row: UserRow) -> bool:
        """Whether an unclaimed-marked user's claim landed after all; if so, drop the mark."""
        if await self._owner(row.username_key) != row.user_id:
            return False
        await self._call(lambda: self._client.delete(self._keys.account(row.user_id)[1]))
        return True

    async def get_user(self, user_id: str) -> UserRow | None:
        keys = self._keys.account(user_id)
        raw, unclaimed = await self._call(lambda: self._client.mget(keys))
        if raw is None:
            return None
        row = user_from_json(raw)
        if unclaimed is not None and not await self._claimed(row):
            return None
        return row

    async def find_user(self, username_key: str) -> UserRow | None:
        owner = await self._owner(username_key)
        if owner is None:
            return None
        raw = await self._call(lambda: self._client.get(self._keys.account(owner)[0]))
        return _indexed(None if raw is None else str(raw), username_key, owner)

    async def _owner(self, username_key: str) -> str | None:
        index = self._keys.usernames()[0]
        owner = await self._call(lambda: self._client.hget(index, username_key))
        return None if owner is None else str(owner)  # str already: decode_responses

    async def list_users(self, *, after: str | None, limit: int) -> list[UserRow]:
        rows: list[UserRow] = []
        while len(rows) < limit:  # entries without a record are skipped: read on
            want = limit - len(rows)
            args = [optional(after), str(want)]
            flat = await self._script("user_list", self._keys.usernames(), args)
            page = list(zip(flat[::2], flat[1::2], strict=True))
            rows += await self._records(page)
            if len(page) < want:
                break
            after = page[-1][0]
        return rows

    async def _records(self, page: list[tuple[str, str | None]]) -> list[UserRow]:
        """The users of a page of the index (one pipeline: records are in many slots)."""
        owned = [(key, owner) for key, owner in page if owner is not None]
        if not owned:
            return []

        async def op() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for _, owner in owned:
                pipe.get(self._keys.account(owner)[0])
            replies: list[Any] = await pipe.execute()
            return replies

        raws = await self._call(op)
        found = (_indexed(raw, *entry) for entry, raw in zip(owned, raws, strict=True))
        return [row for row in found if row is not None]

    async def update_user(self, user_id: str, change: UserChange) -> UserRow | None:
        reply = await self._update(user_id, change)
        if reply[1] == "unclaimed":
            if not await self._claimed(user_from_json(reply[2])):
                return None
            reply = await self._update(user_id, change)
        return user_from_json(reply[2]) if reply[1] == "updated" else None

    async def _update(self, user_id: str, change: UserChange) -> list[Any]:
        roles = None if change.roles is None else roles_json(change.roles)
        disabled = "" if change.disabled is None else str(int(change.disabled))
        args = [self._now(), optional(change.expected_hash)]
        args += [optional(change.password_hash or None), optional(roles), disabled]
        # a compare-and-set on the hash may not be repeated: it would conflict with itself
        retry = change.expected_hash is None
        keys = self._keys.account(user_id)
        reply: list[Any] = await self._script("user_update", keys, args, idempotent=retry)
        return reply


def _indexed(raw: str | None, username_key: str, owner: str) -> UserRow | None:
    """The record an index entry names, if it is there and is that entry's user."""
    if raw is None:
        return None
    row = user_from_json(raw)
    return row if (row.user_id, row.username_key) == (owner, username_key) else None
