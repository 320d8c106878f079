"""Integration tier: real PostgreSQL, real Redis, one lean local Ray for the whole package."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import ray
import redis.asyncio as aioredis

from actors.bootstrap import EngineActors, start_actors, stop_actors
from engine.adapters.postgres import PostgresJournal, create_pool
from engine.adapters.redis_store import RedisOrders
from engine.intake import OrderIntake
from engine.settings import Settings
from runtime.ray_local import init_ray
from tests.conftest import ROOT, TestStores, reset_stores


@pytest.fixture(scope="package")
def ray_local() -> Iterator[None]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp_dir = tempfile.mkdtemp(prefix="oee-ray-", dir="/tmp")
    init_ray(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=temp_dir,
        log_to_driver=False,
        namespace="oee-test",
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}},
    )
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
async def clean(stores: TestStores) -> TestStores:
    await reset_stores(stores)
    return stores


@pytest.fixture
async def pg_pool(clean: TestStores) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(clean.database_url, min_size=1, max_size=5)
    yield pool
    await pool.close()


@pytest.fixture
async def journal(pg_pool: asyncpg.Pool) -> PostgresJournal:
    return PostgresJournal(pg_pool)


@pytest.fixture
async def redis_orders(clean: TestStores) -> AsyncIterator[RedisOrders]:
    client = aioredis.Redis.from_url(clean.redis_url)
    yield RedisOrders(client, clean.redis_prefix)
    await client.aclose()


def fast_settings(stores: TestStores, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": stores.redis_url,
        "database_url": stores.database_url,
        "redis_prefix": stores.redis_prefix,
        "quote_latency_ms": 20.0,
        "swap_latency_ms": (40.0, 60.0),
        "retry_base_delay_ms": 50.0,
        "rate_limit_per_minute": 60_000.0,
        "rate_limit_burst": 100,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)


def unique_suffix() -> str:
    return f"_{secrets.token_hex(3)}"


@pytest.fixture
def engine_factory(clean: TestStores) -> Iterator[Any]:
    started: list[EngineActors] = []

    def start(**overrides: Any) -> tuple[EngineActors, Settings]:
        settings = fast_settings(clean, **overrides)
        actors = start_actors(settings, suffix=unique_suffix())
        started.append(actors)
        return actors, settings

    yield start
    for actors in started:
        stop_actors(actors)


@pytest.fixture
async def intake(journal: PostgresJournal, redis_orders: RedisOrders) -> AsyncIterator[OrderIntake]:
    yield OrderIntake(journal, redis_orders)
