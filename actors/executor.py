"""OrderExecutor: runs orders through :class:`engine.execution.OrderWorkflow`. Many orders at once per actor."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from actors.venue_client import HubSink, VenueClient, WatcherClient
from engine.adapters import redis_store
from engine.adapters.postgres import PostgresJournal, create_pool
from engine.adapters.redis_store import RedisOrders
from engine.clock import SystemClock
from engine.execution import OrderWorkflow
from engine.logs import setup_logging
from engine.models import VenueName
from engine.settings import Settings

log = logging.getLogger("actors.executor")


class OrderExecutor:
    def __init__(
        self, settings: Settings, redis_url: str, database_url: str, hub: Any, venues: dict[VenueName, Any], watcher: Any = None
    ) -> None:
        setup_logging(settings.log_level)
        self._settings = settings
        self._redis_url = redis_url
        self._database_url = database_url
        self._hub = hub
        self._venue_handles = venues
        self._watcher = watcher
        self._workflow: OrderWorkflow | None = None
        self._pool: asyncpg.Pool | None = None
        self._redis: aioredis.Redis | None = None
        self._lock = asyncio.Lock()
        self.running = 0
        self.completed = 0

    async def _ready(self) -> OrderWorkflow:
        if self._workflow is None:
            async with self._lock:
                if self._workflow is None:
                    self._pool = await create_pool(self._database_url, min_size=1, max_size=self._pool_size())
                    self._redis = redis_store.connect(self._redis_url)
                    self._workflow = OrderWorkflow(
                        venues={name: VenueClient(name, handle) for name, handle in self._venue_handles.items()},
                        sink=HubSink(self._hub),
                        journal=PostgresJournal(self._pool),
                        active=RedisOrders(self._redis, self._settings.redis_prefix),
                        clock=SystemClock(),
                        retry=self._settings.retry_policy(),
                        max_price_impact_pct=self._settings.max_price_impact_pct,
                        rng=random.Random(),
                        watcher=WatcherClient(self._watcher) if self._watcher is not None else None,
                    )
        return self._workflow

    def _pool_size(self) -> int:
        """Connections for this executor's share of the running orders. Event writes are batched
        (at most two statements in flight), so a few connections serve many orders; more would
        only exhaust PostgreSQL's (~100 here) when several engines share a server."""
        share = -(-self._settings.max_concurrent_orders // self._settings.executor_pool_size)
        return max(4, min(share + 2, 8))

    async def ready(self) -> bool:
        await self._ready()
        return True

    async def execute(self, order_id: str) -> str | None:
        """Run the order to a terminal state; return that state (None if the order is unknown)."""
        workflow = await self._ready()
        self.running += 1
        try:
            order = await workflow.run(order_id)
            return order.status.value if order else None
        finally:
            self.running -= 1
            self.completed += 1

    async def abandon(self, order_id: str, reason: str) -> str | None:
        """Fail an order that cannot be executed (it keeps crashing executors), so it still ends."""
        order = await (await self._ready()).fail(order_id, reason)
        return order.status.value if order else None

    def load(self) -> int:
        return self.running

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        if self._redis is not None:
            await self._redis.aclose()
