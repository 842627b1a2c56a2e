"""Redis store: one Lua script per atomic step, native TTLs, one hash tag per user.

The store is its capabilities, one base class each: sessions (:mod:`.sessions`), state
documents (:mod:`.state`), users (:mod:`.users`), GCRA limits (:mod:`.limits`), budgets,
ledgers and holds (:mod:`.budgets`) and job queues (:mod:`.jobs`, sharded by
:mod:`.jobs_sharded`); all of them run through
one connection, pool, script table and retrier (:mod:`.connection`) on one key layout
(:mod:`.keys`). This module adds the lifecycle: open, close, ping and the pool's figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from ..records import PoolStats
from .budgets import RedisBudgets
from .jobs_sharded import RedisShardedJobs
from .keys import RouteCache
from .limits import RedisLimits
from .sessions import RedisSessions
from .state import RedisState
from .users import RedisUsers


class RedisStore(
    RedisSessions, RedisState, RedisUsers, RedisLimits, RedisBudgets, RedisShardedJobs
):
    def __repr__(self) -> str:
        return f"RedisStore({self.url.redacted()!r})"

    @property
    def backend(self) -> str:
        return "redis"

    # lifecycle

    async def open(self) -> None:
        if self._cluster:
            await self._call(self._load_everywhere)
            return

        async def load() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for script in self._scripts.values():
                pipe.script_load(script.script)
            loaded: list[Any] = await pipe.execute()
            return loaded

        await self._call(load)

    async def _load_everywhere(self) -> None:
        """Every script on every node, replicas too: one promoted later has them already."""
        await self._client.initialize()
        nodes = self._client.get_nodes()  # a list: redis-py 7.4 routes a flag here by key
        await asyncio.gather(*(
            self._client.execute_command("SCRIPT", "LOAD", script.script, target_nodes=nodes)
            for script in self._scripts.values()
        ))  # fmt: skip

    async def aclose(self) -> None:
        self._routes = RouteCache(self._options.route_cache_size)
        await self._gcra.close()
        with contextlib.suppress(Exception):  # the pool closes every connection anyway
            await self._lease.close()
        await self._client.aclose()  # from_pool: the client owns the pool and closes it

    async def ping(self) -> float:
        async def op() -> float:
            started = time.perf_counter()
            await self._client.ping()
            return time.perf_counter() - started

        return await self._call(op)

    async def server_version(self) -> str:
        if self._cluster:
            node = {"target_nodes": self._client.get_random_node()}
            info = await self._call(lambda: self._client.info("server", **node))
        else:
            info = await self._call(lambda: self._client.info("server"))
        return str(info["redis_version"])

    def pool_stats(self) -> PoolStats:
        if self._cluster:
            return self._cluster_pool_stats()
        # redis-py has no public pool statistics; read its lists defensively.
        in_use = len(getattr(self._pool, "_in_use_connections", ()))
        idle = len(getattr(self._pool, "_available_connections", ()))
        if self._lease.kept_idle and in_use:  # taken out of the pool, but no call runs on it
            in_use, idle = in_use - 1, idle + 1
        size = self._options.max_connections
        return PoolStats(in_use=in_use, idle=idle, waiting=self._pool.waiting, max_size=size,
                         wait_time=self._pool.wait_time)  # fmt: skip

    def _cluster_pool_stats(self) -> PoolStats:
        """Summed over the nodes' connection lists (``max_size`` is per node)."""
        in_use = idle = 0
        for node in self._client.get_nodes():
            total = len(getattr(node, "_connections", ()))
            free = len(getattr(node, "_free", ()))
            in_use, idle = in_use + total - free, idle + free
        size = self._options.max_connections
        return PoolStats(in_use=in_use, idle=idle, waiting=0, max_size=size)
