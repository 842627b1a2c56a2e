"""Only hashes of session tokens are stored: the raw token is nowhere in the store."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from sessionward import open_ward
from sessionward.stores.memory import MemoryStore
from sessionward.ward import Ward

pytestmark = pytest.mark.anyio


async def dump(ward: Ward, url: str) -> str:
    """Everything the store holds, as text."""
    store = ward.store
    if isinstance(store, MemoryStore):
        return repr(vars(store))
    if url.startswith("sqlite"):
        path = Path(urlsplit(url).path[1:])
        files = [path, Path(f"{path}-wal")]
        return "".join(f.read_bytes().decode("latin-1") for f in files if f.exists())
    options = parse_qs(urlsplit(url).query)
    if url.startswith("redis"):
        return await _dump_redis(url, options["key_prefix"][0])
    return await _dump_postgres(url, options["schema"][0])


async def _dump_redis(url: str, prefix: str) -> str:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url.split("?")[0])
    out = []
    async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        out.append(repr(key))
        kind = (await client.type(key)).decode()
        if kind == "string":
            out.append(repr(await client.get(key)))
        elif kind == "hash":
            out.append(repr(await client.hgetall(key)))
        elif kind == "zset":
            out.append(repr(await client.zrange(key, 0, -1, withscores=True)))
        else:
            out.append(repr(await client.dump(key)))
    await client.aclose()
    assert out, "nothing found under the key prefix: the dump is looking in the wrong place"
    return "\n".join(out)


async def _dump_postgres(url: str, schema: str) -> str:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url.split("?")[0]) as conn:
        tables = await conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        )
        out = []
        for (table,) in await tables.fetchall():
            rows = await conn.execute(f'SELECT row_to_json(t)::text FROM "{schema}"."{table}" t')
            out += [row for (row,) in await rows.fetchall()]
    return "\n".join(out)


async def test_tokens_are_stored_only_as_sha256(store_url: str) -> None:
    async with open_ward(store_url, sweep=False) as ward:
        new = await ward.sessions.create("alice")
        rotated = await ward.sessions.rotate(new.token)
        text = await dump(ward, store_url)
    for token in (new.token, rotated.token):
        assert token not in text
    assert hashlib.sha256(rotated.token.encode()).hexdigest() in text
    assert new.session.session_id in text  # the dump does see the store's contents
