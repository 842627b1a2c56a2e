"""Events over PostgreSQL LISTEN/NOTIFY (see :mod:`sessionward.events`).

One channel per schema, ``sw_events_<schema>`` (hashed when that would pass PostgreSQL's
63-byte identifier limit), so deployments sharing a database never see each other's events.
The listener holds a dedicated autocommit connection (``application_name`` gets
``-events`` appended); NOTIFY goes through a small pool of the hub's own. After
``heartbeat`` seconds of silence the listener repeats its LISTEN (a no-op round trip) and
calls the connection dead if no answer comes within as long again.

A NOTIFY payload is at most 8000 bytes. Frames are ASCII JSON; a longer one is sent as
numbered chunks ``<id>/<k>/<n> <part>`` in one statement, hence one transaction, and put
back together by the listener. Chunks of one frame arrive together (PostgreSQL delivers a
transaction's notifications contiguously, in commit order); partial frames are bounded.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from collections.abc import Callable
from contextlib import aclosing

import anyio
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from ...urls import PostgresOptions, StoreURL
from ..retry import Retrier
from .connection import Conn, check_connection, conninfo, is_transient, is_unavailable

PAYLOAD_LIMIT = 7900  # PostgreSQL refuses payloads of 8000 bytes or more
CHUNK = 7800  # room for the chunk header
PARTIAL_FRAMES = 64
PUBLISHERS = 4
_NOTIFY = sql.SQL("SELECT pg_notify(%s, part) FROM unnest(%s::text[]) AS part")


def wire_channel(schema: str) -> str:
    name = f"sw_events_{schema}"
    if len(name) <= 63:
        return name
    return "sw_events_" + hashlib.sha256(schema.encode()).hexdigest()[:40]


def split_frame(frame: str) -> list[str]:
    """NOTIFY payloads carrying ``frame``: itself, or chunks of it."""
    if len(frame) <= PAYLOAD_LIMIT:
        return [frame]
    parts = [frame[i : i + CHUNK] for i in range(0, len(frame), CHUNK)]
    tag = secrets.token_hex(8)
    return [f"{tag}/{k}/{len(parts)} {part}" for k, part in enumerate(parts)]


class Reassembly:
    """Puts chunked frames back together; a frame's chunks may come in any order."""

    def __init__(self, limit: int = PARTIAL_FRAMES) -> None:
        self._limit = limit
        self._partial: OrderedDict[str, dict[int, str]] = OrderedDict()

    def feed(self, payload: str) -> str | None:
        """The whole frame once ``payload`` completes one, else ``None``."""
        if payload.startswith("{"):
            return payload
        header, _, part = payload.partition(" ")
        tag, k, n = _header(header)
        if n <= 0:
            return None
        parts = self._partial.setdefault(tag, {})
        parts[k] = part
        if len(parts) < n:
            while len(self._partial) > self._limit:
                self._partial.popitem(last=False)
            return None
        del self._partial[tag]
        if any(i not in parts for i in range(n)):
            return None  # inconsistent chunk counts: not from this module
        return "".join(parts[i] for i in range(n))


def _header(header: str) -> tuple[str, int, int]:
    tag, _, rest = header.partition("/")
    k, _, n = rest.partition("/")
    if not (tag and k.isdigit() and n.isdigit() and int(k) < int(n) <= 100_000):
        return "", 0, 0
    return tag, int(k), int(n)


class PostgresTransport:
    def __init__(self, url: StoreURL, *, heartbeat: float) -> None:
        assert isinstance(url.options, PostgresOptions)
        options = url.options
        self._heartbeat = heartbeat
        self.wire = wire_channel(options.schema_name)
        self._listen = sql.SQL("LISTEN {}").format(sql.Identifier(self.wire))
        self._retry = Retrier("postgresql", is_transient, unavailable=is_unavailable)
        name = f"{options.application_name}-events"[:63]
        self._listener_info = conninfo(options.model_copy(update={"application_name": name}))
        self._pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            conninfo(options),
            kwargs={"autocommit": True},
            min_size=0,
            max_size=PUBLISHERS,
            timeout=options.pool_timeout,
            check=check_connection,
            reconnect_timeout=options.pool_timeout,
            name=f"sessionward-events:{options.schema_name}",
            open=False,
        )

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def aclose(self) -> None:
        await self._pool.close()

    async def publish(self, frame: str) -> None:
        payloads = split_frame(frame)

        async def op() -> None:
            async with self._pool.connection() as conn:
                await conn.execute(_NOTIFY, (self.wire, payloads))

        # Not repeated on failure: a NOTIFY whose reply was lost may have been delivered.
        await self._retry(op, idempotent=False)

    async def listen(self, deliver: Callable[[str], None], connected: Callable[[], None]) -> None:
        conn = await AsyncConnection.connect(self._listener_info, autocommit=True)
        try:
            await conn.execute(self._listen)
            connected()
            reassembly = Reassembly()
            while True:
                await self._drain(conn, reassembly, deliver)
                with anyio.fail_after(self._heartbeat):
                    await conn.execute(self._listen)  # a round trip: is the line alive?
        finally:
            with anyio.CancelScope(shield=True):
                await conn.close()

    async def _drain(
        self, conn: Conn, reassembly: Reassembly, deliver: Callable[[str], None]
    ) -> None:
        """Deliver what arrives for ``heartbeat`` seconds."""
        async with aclosing(conn.notifies(timeout=self._heartbeat)) as notes:
            async for note in notes:
                frame = reassembly.feed(note.payload) if note.channel == self.wire else None
                if frame is not None:
                    deliver(frame)
