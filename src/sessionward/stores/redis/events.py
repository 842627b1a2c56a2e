"""Events over Redis pub/sub (see :mod:`sessionward.events`).

One channel per deployment, ``<key_prefix>:events``, so deployments sharing a server never
see each other's events. The hub has its own connections, built from the store URL's
options but outside the store's pool: a subscribed connection can do nothing else. The
listener's connection is named ``sessionward-events:<key_prefix>`` (``CLIENT LIST``).
After ``heartbeat`` seconds of silence the listener sends a PING; with no answer within as
long again, it calls the connection dead and the hub reconnects.

On Redis Cluster the channel is a shard channel: ``SPUBLISH`` through the cluster client
(routed by the channel's slot, it stays inside that shard instead of crossing the cluster
bus to every node), and the listener ``SSUBSCRIBE``-s on a plain connection to the primary
serving that slot, looked up afresh on every (re)connection. redis-py 7.4's asyncio cluster
client has no pub/sub of its own. The server ends a shard subscription when its slot moves
(a failover, a resharding) with ``sunsubscribe``: the listener then fails, and the hub
reconnects to the new primary (events published meanwhile are lost, as on any reconnect).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.asyncio.connection import BlockingConnectionPool, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError

from ...urls import RedisOptions, StoreURL
from ..retry import Retrier
from .connection import cluster_client, connection_kwargs, is_transient, is_unavailable

PUBLISHERS = 8


def wire_channel(key_prefix: str) -> str:
    return f"{key_prefix}:events"


def listener_name(key_prefix: str) -> str:
    return f"sessionward-events:{key_prefix}"


class RedisTransport:
    def __init__(self, url: StoreURL, *, heartbeat: float) -> None:
        assert isinstance(url.options, RedisOptions)
        self._options = url.options
        self._heartbeat = heartbeat
        self.wire = wire_channel(url.options.key_prefix)
        self._retry = Retrier("redis", is_transient, unavailable=is_unavailable)
        pool = BlockingConnectionPool(
            max_connections=PUBLISHERS,
            timeout=url.options.pool_timeout,
            **connection_kwargs(url.options),
        )
        self._publisher: Any = Redis.from_pool(pool)  # no I/O until first used
        if url.options.cluster:
            self._publisher = cluster_client(url.options)

    async def open(self) -> None:
        pass

    async def aclose(self) -> None:
        await self._publisher.aclose()

    async def publish(self, frame: str) -> None:
        # Not repeated on failure: a PUBLISH whose reply was lost may have been delivered.
        if self._options.cluster:
            send = ("SPUBLISH", self.wire, frame)
            await self._retry(lambda: self._publisher.execute_command(*send), idempotent=False)
            return
        await self._retry(lambda: self._publisher.publish(self.wire, frame), idempotent=False)

    async def listen(self, deliver: Callable[[str], None], connected: Callable[[], None]) -> None:
        kwargs: dict[str, Any] = connection_kwargs(self._options)
        if self._options.cluster:
            kwargs.update(await self._shard_primary())
        name = listener_name(self._options.key_prefix)
        client = Redis.from_pool(ConnectionPool(max_connections=1, client_name=name, **kwargs))
        # redis-py's hints differ across the versions we support: PubSub stays untyped
        pubsub: Any = client.pubsub()
        try:
            if self._options.cluster:
                await pubsub.execute_command("SSUBSCRIBE", self.wire)
            else:
                await pubsub.subscribe(self.wire)
            await self._confirmed(pubsub)
            connected()
            await self._receive(pubsub, deliver)
        finally:
            with anyio.CancelScope(shield=True):
                await pubsub.aclose()
                await client.aclose()

    async def _shard_primary(self) -> dict[str, Any]:
        """Host and port of the primary serving the channel's slot, from a fresh slot map."""
        finder = cluster_client(self._options)
        try:
            await finder.initialize()
            node = finder.get_node_from_key(self.wire)
            return {"host": node.host, "port": node.port}
        finally:
            with anyio.CancelScope(shield=True):
                await finder.aclose()

    async def _confirmed(self, pubsub: Any) -> None:
        reply = await pubsub.get_message(timeout=self._options.connect_timeout)
        if reply is None or reply.get("type") not in ("subscribe", "ssubscribe"):
            raise RedisConnectionError(f"SUBSCRIBE {self.wire} was not confirmed")

    async def _receive(self, pubsub: Any, deliver: Callable[[str], None]) -> None:
        heard = time.monotonic()
        while True:
            message = await pubsub.get_message(timeout=self._heartbeat)
            if message is not None:
                heard = time.monotonic()
                kind = message.get("type")
                if kind in ("message", "smessage") and isinstance(message.get("data"), str):
                    deliver(message["data"])
                elif kind == "sunsubscribe":  # the slot moved: reconnect to its new primary
                    raise RedisConnectionError(f"{self.wire} moved to another shard")
            elif time.monotonic() - heard >= 1.5 * self._heartbeat:
                raise RedisConnectionError("the pub/sub connection does not answer PING")
            else:
                await pubsub.ping()
