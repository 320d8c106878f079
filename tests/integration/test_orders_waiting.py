"""LIMIT orders and slippage on real actors: watcher cost, tokens, and a price pushed mid-swap."""

from __future__ import annotations

import asyncio
import time

import pytest
import ray

from engine.adapters.postgres import PostgresJournal
from engine.intake import Accepted, OrderIntake
from engine.models import OrderRequest, OrderStatus, OrderType
from tests.chain_scan import landed_per_order, scan_node
from tests.integration.test_engine_actors import wait_terminal

pytestmark = pytest.mark.usefixtures("ray_local")


async def _wait_for(predicate, timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _submit_limit(intake: OrderIntake, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        request = OrderRequest(token_in="SOL", token_out="USDC", amount=1.0, order_type=OrderType.LIMIT, limit_price=10_000.0)
        outcome = await intake.submit(request, time.time() * 1000)
        assert isinstance(outcome, Accepted)
        ids.append(outcome.order_id)
    return ids


async def _per_tick(watcher, ticks: int = 10) -> float:
    """Venue reads per tick over at least ``ticks`` ticks, however long a loaded machine takes for them."""
    before = ray.get(watcher.stats.remote())
    after = before
    deadline = time.monotonic() + 60
    while after["ticks"] - before["ticks"] < ticks:
        assert time.monotonic() < deadline, f"the watcher ticked {after['ticks'] - before['ticks']} times in 60 s"
        await asyncio.sleep(0.1)
        after = ray.get(watcher.stats.remote())
    per_tick: float = (after["snapshots"] - before["snapshots"]) / (after["ticks"] - before["ticks"])
    return per_tick


async def test_a_thousand_waiting_orders_cost_the_venues_what_one_does(engine_factory, intake, journal: PostgresJournal) -> None:
    actors, _ = engine_factory(watch_interval_ms=100.0, rate_limit_per_minute=60.0, rate_limit_burst=1)
    first = await _submit_limit(intake, 1)

    async def watching(n: int) -> bool:
        return bool(ray.get(actors.watcher.stats.remote())["watching"] >= n)

    await _wait_for(lambda: watching(1), what="one waiting order")
    one = await _per_tick(actors.watcher)
    quotes_before = sum(ray.get(v.stats.remote())["quote"] for v in actors.venues.values())
    await _submit_limit(intake, 999)
    await _wait_for(lambda: watching(1000), timeout_s=120, what="1,000 waiting orders")
    thousand = await _per_tick(actors.watcher)
    quotes_after = sum(ray.get(v.stats.remote())["quote"] for v in actors.venues.values())
    granted = ray.get(actors.limiter.stats.remote())["granted"]
    print(f"venue reads per tick: 1 order {one:.2f}, 1,000 orders {thousand:.2f}; quotes while waiting {quotes_after - quotes_before}")
    assert one == thousand == len(actors.venues)
    assert quotes_after == quotes_before  # waiting orders are never quoted one by one
    assert granted == 0  # and they took no rate-limit token
    order = await journal.get(first[0])
    assert order is not None and order.status is OrderStatus.WAITING


async def test_price_pushed_mid_swap_fails_with_slippage_exceeded_and_swaps_nothing(
    engine_factory,
    intake,
    journal: PostgresJournal,
    pg_pool,
) -> None:
    actors, _ = engine_factory(swap_latency_ms=(800.0, 800.0))
    request = OrderRequest(token_in="SOL", token_out="USDC", amount=2.0, slippage_bps=50, order_type=OrderType.MARKET)
    outcome = await intake.submit(request, time.time() * 1000)
    assert isinstance(outcome, Accepted)

    async def submitted() -> bool:
        order = await journal.get(outcome.order_id)
        return order is not None and order.status is OrderStatus.SUBMITTED

    await _wait_for(submitted, what="submitted")
    for venue in actors.venues.values():  # the market drops 5% while the swap is in flight
        ray.get(venue.move_price.remote("SOL", "USDC", -5.0))
    trails = await wait_terminal(journal, [outcome.order_id])
    order = await journal.get(outcome.order_id)
    assert order is not None and order.status is OrderStatus.FAILED
    assert order.failure_reason is not None and "slippage exceeded" in order.failure_reason
    routing = [e for e in trails[outcome.order_id] if e.status is OrderStatus.ROUTING]
    assert len(routing) == 2 and "re-quoting once" in (routing[1].error or "")  # re-quoted exactly once
    assert landed_per_order(await scan_node(actors.chain))[outcome.order_id] == 0  # nothing landed on the chain
    print(f"slippage: {order.failure_reason}")
