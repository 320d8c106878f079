"""Shared fixtures: each test session gets its own PostgreSQL database and its own Redis key space.

Local servers on 5432/6379 are used when they listen; otherwise embedded ones are
started under a temp dir. Only what this session created is dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import redis
import redis.asyncio

from runtime.embedded import Dependencies, scratch_servers, with_database

ROOT = Path(__file__).resolve().parents[1]
TEST_REDIS_DB = 13


@dataclass(frozen=True)
class Services:
    pg_admin_url: str  # a database URL on the server, used to create/drop test databases
    redis_base_url: str  # without a db number


@dataclass(frozen=True)
class TestStores:
    database_url: str
    redis_url: str
    redis_prefix: str


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    deps = Dependencies(redis_url="", database_url="")
    scratch = Path(tempfile.mkdtemp(prefix="oee-svc-"))
    try:
        yield Services(*scratch_servers(scratch, deps))
    finally:
        deps.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def scratch_stores(services: Services, label: str, redis_db: int) -> Iterator[TestStores]:
    """A PostgreSQL database and a Redis key prefix of their own (named after ``label``), dropped afterwards."""
    name = f"oee_{label}_{os.getpid()}_{secrets.token_hex(3)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(services.pg_admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    prefix = f"oee-{label.replace('_', '-')}-{secrets.token_hex(4)}:"
    redis_url = f"{services.redis_base_url}/{redis_db}"
    try:
        yield TestStores(with_database(services.pg_admin_url, name), redis_url, prefix)
    finally:
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def stores(services: Services) -> Iterator[TestStores]:
    yield from scratch_stores(services, "test", TEST_REDIS_DB)


async def reset_stores(stores: TestStores) -> None:
    """Empty this session's tables and keys (never anything else)."""
    from engine.adapters.postgres import create_pool, migrate

    pool = await create_pool(stores.database_url, min_size=1, max_size=1)
    try:
        await migrate(pool)
        await pool.execute(
            "TRUNCATE orders, order_events, order_settlements, api_keys, account_limits, account_limit_changes, "
            "trading_state_changes, dispatch_leases"
        )
    finally:
        await pool.close()
    client = redis.asyncio.Redis.from_url(stores.redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{stores.redis_prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
