"""The one place that opens the engine's stores from settings: PostgreSQL (the journal) and Redis
(active orders and the queue)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis

from engine.adapters import redis_store
from engine.adapters.postgres import PostgresJournal, create_pool
from engine.adapters.redis_store import RedisOrders
from engine.settings import Settings, reveal


class StoresNotConfigured(ValueError):
    """Settings reached a component without resolved store URLs (the runtime resolves them first)."""


@dataclass
class Stores:
    pool: asyncpg.Pool
    redis: aioredis.Redis
    journal: PostgresJournal
    orders: RedisOrders

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.pool.close()
        with contextlib.suppress(Exception):
            await self.redis.aclose()


def urls(settings: Settings) -> tuple[str, str]:
    """The database and Redis URLs; raises :class:`StoresNotConfigured` if either is unset."""
    database_url, redis_url = reveal(settings.database_url), reveal(settings.redis_url)
    if not database_url or not redis_url:
        raise StoresNotConfigured("database_url and redis_url must be resolved before components start")
    return database_url, redis_url


async def open_stores(settings: Settings, *, min_size: int, max_size: int) -> Stores:
    """Open a PostgreSQL pool (``min_size`` connections now) and a Redis client.

    ``min_size=0`` makes no connection here, so a database that is down is met per request
    (the edge answers 503) instead of at start-up.
    """
    database_url, redis_url = urls(settings)
    pool = await create_pool(database_url, min_size=min_size, max_size=max_size)
    client = redis_store.connect(redis_url)
    return Stores(pool, client, PostgresJournal(pool), RedisOrders(client, settings.redis_prefix))
