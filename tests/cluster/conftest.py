"""Cluster tier: a head and two worker raylets on this machine (ray.cluster_utils.Cluster), real
PostgreSQL and Redis (this session's own database and key prefix, see tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
import redis.asyncio as aioredis

from engine.adapters.postgres import PostgresJournal, create_pool
from engine.adapters.redis_store import RedisOrders
from engine.intake import OrderIntake
from tests.conftest import TestStores, reset_stores


@dataclass
class Stores:
    urls: TestStores
    pool: asyncpg.Pool
    journal: PostgresJournal
    orders: RedisOrders
    intake: OrderIntake


@pytest.fixture
async def db(stores: TestStores) -> AsyncIterator[Stores]:
    """This session's stores, emptied, with a journal and an intake to submit through."""
    await reset_stores(stores)
    pool = await create_pool(stores.database_url, min_size=1, max_size=4)
    client = aioredis.Redis.from_url(stores.redis_url)
    journal = PostgresJournal(pool)
    orders = RedisOrders(client, stores.redis_prefix)
    yield Stores(stores, pool, journal, orders, OrderIntake(journal, orders))
    await client.aclose()
    await pool.close()
