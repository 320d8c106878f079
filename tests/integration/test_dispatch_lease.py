"""The dispatch lease against the real PostgreSQL, and two dispatchers on the same stores: one
dispatches, the other stands by and takes over once the first is gone."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest
import ray

from engine.adapters.dispatch_lease import DispatchLease, process_gone, this_process
from engine.adapters.postgres import PostgresJournal
from engine.intake import OrderIntake
from tests.integration.test_engine_actors import submit, wait_terminal

SCOPE = "redis=test prefix=lease-test:"


async def test_one_holder_at_a_time_and_takeover_after_expiry(pg_pool: asyncpg.Pool) -> None:
    first = DispatchLease(pg_pool, SCOPE, "engine-a", ttl_s=0.6)
    second = DispatchLease(pg_pool, SCOPE, "engine-b", ttl_s=0.6)
    held = await first.acquire()
    assert held is not None and held.holder == "engine-a" and held.token == 1
    assert await second.acquire() is None  # a live lease of another holder
    renewed = await first.acquire()
    assert renewed is not None and renewed.token == 1 and renewed.expires_at >= held.expires_at
    assert await first.held_here() and not await second.held_here()

    # the first stops renewing: once expired, the second takes it with a new token
    deadline = time.monotonic() + 30
    taken = None
    while taken is None and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        taken = await second.acquire()
    assert taken is not None and taken.holder == "engine-b" and taken.token == 2
    assert await first.acquire() is None  # the old holder cannot come back while it is live
    assert not await first.held_here()


async def test_an_orderly_release_hands_over_at_once(pg_pool: asyncpg.Pool) -> None:
    first = DispatchLease(pg_pool, SCOPE + "release", "engine-a", ttl_s=60)
    second = DispatchLease(pg_pool, SCOPE + "release", "engine-b", ttl_s=60)
    assert await first.acquire() is not None
    assert await second.acquire() is None
    await first.release()
    taken = await second.acquire()
    assert taken is not None and taken.token == 2


async def test_racing_holders_never_both_win(pg_pool: asyncpg.Pool) -> None:
    leases = [DispatchLease(pg_pool, SCOPE + "race", f"engine-{i}", ttl_s=60) for i in range(5)]
    granted = await asyncio.gather(*(lease.acquire() for lease in leases))
    assert sum(g is not None for g in granted) == 1


@pytest.mark.usefixtures("ray_local")
async def test_a_standby_dispatcher_takes_over_when_the_active_one_is_gone(
    engine_factory: Any, intake: OrderIntake, journal: PostgresJournal
) -> None:
    active, _ = engine_factory(dispatch_lease_ttl_s=2.0, dispatch_lease_renew_s=0.2)
    standby, _ = engine_factory(dispatch_lease_ttl_s=2.0, dispatch_lease_renew_s=0.2)
    assert ray.get(active.dispatcher.stats.remote())["dispatcher"] == "active"
    assert ray.get(standby.dispatcher.stats.remote())["dispatcher"] == "standby"

    await wait_terminal(journal, await submit(intake, 3), timeout_s=120)
    assert ray.get(standby.dispatcher.stats.remote())["dispatched"] == 0

    ray.kill(active.dispatcher, no_restart=True)  # gone without releasing its lease
    await wait_terminal(journal, await submit(intake, 3), timeout_s=120)
    stats = ray.get(standby.dispatcher.stats.remote())
    assert stats["dispatcher"] == "active" and stats["dispatched"] >= 3


async def test_a_holder_whose_process_is_gone_is_taken_over_at_once(pg_pool: asyncpg.Pool) -> None:
    dead = await asyncio.create_subprocess_exec("true")
    await dead.wait()  # its pid names no process now
    first = DispatchLease(pg_pool, SCOPE + "gone", "engine-a", ttl_s=60)
    first.process = this_process().rsplit("/", 1)[0] + f"/{dead.pid}"
    assert await first.acquire() is not None
    alive = DispatchLease(pg_pool, SCOPE + "alive", "engine-a", ttl_s=60)
    assert await alive.acquire() is not None  # held by this (live) process

    second = DispatchLease(pg_pool, SCOPE + "gone", "engine-b", ttl_s=60)
    taken = await second.acquire()
    assert taken is not None and taken.holder == "engine-b" and taken.token == 2
    assert await DispatchLease(pg_pool, SCOPE + "alive", "engine-b", ttl_s=60).acquire() is None
    assert not process_gone("another-host/1/1") and not process_gone("garbage")
