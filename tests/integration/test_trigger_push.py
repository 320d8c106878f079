"""Pushed triggers on real actors: a venue's pool change fires waiting orders without the poll.

The watcher's poll is set an hour apart, so these orders can only fire on a push; and they route on
the pool state that fired them, so the venues are not quoted again.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest
import ray

from engine.adapters.postgres import PostgresJournal
from engine.intake import Accepted, OrderIntake
from engine.models import OrderRequest, OrderStatus, OrderType
from tests.integration.test_engine_actors import wait_terminal
from venues.simulated import RAYDIUM, b58encode

pytestmark = pytest.mark.usefixtures("ray_local")

NO_POLL_MS = 3_600_000.0


async def _wait_for(predicate, timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _submit(intake: OrderIntake, request: OrderRequest) -> str:
    outcome = await intake.submit(request, time.time() * 1000)
    assert isinstance(outcome, Accepted)
    return outcome.order_id


def _quotes(actors) -> int:
    return sum(ray.get(v.stats.remote())["quote"] for v in actors.venues.values())


async def _fires_on_push(actors, journal: PostgresJournal, order_id: str, push) -> None:
    watcher = actors.watcher
    await _wait_for(lambda: ray.get(watcher.stats.remote())["watching"] >= 1, what="the order in the watcher")
    before = ray.get(watcher.stats.remote())
    quotes = _quotes(actors)

    push()
    await wait_terminal(journal, [order_id])

    after = ray.get(watcher.stats.remote())
    order = await journal.get(order_id)
    assert order is not None and order.status is OrderStatus.CONFIRMED, order
    assert after["ticks"] == before["ticks"]  # no poll ran: the push fired it
    assert after["fired_on_push"] == before["fired_on_push"] + 1
    assert _quotes(actors) == quotes  # routed on the pushed pool state, not on a fresh quote


async def test_a_pushed_listing_fires_a_sniper_without_waiting_for_the_poll(engine_factory, intake, journal) -> None:
    actors, _ = engine_factory(watch_interval_ms=NO_POLL_MS)
    mint = b58encode(secrets.token_bytes(32))
    order_id = await _submit(intake, OrderRequest(token_in="SOL", token_out=mint, amount=1.0, order_type=OrderType.SNIPER))

    await _fires_on_push(
        actors, journal, order_id, lambda: ray.get(actors.venues[RAYDIUM].list_pool.remote(mint, "SOL", 1_000_000.0, 1_000.0))
    )


async def test_a_pushed_price_move_fires_a_limit_without_waiting_for_the_poll(engine_factory, intake, journal) -> None:
    actors, _ = engine_factory(watch_interval_ms=NO_POLL_MS)
    mint = b58encode(secrets.token_bytes(32))
    ray.get(actors.venues[RAYDIUM].list_pool.remote(mint, "SOL", 1_000_000.0, 1_000.0))  # ~996 of it per SOL net
    request = OrderRequest(token_in="SOL", token_out=mint, amount=1.0, order_type=OrderType.LIMIT, limit_price=1_030.0)
    order_id = await _submit(intake, request)

    await _fires_on_push(actors, journal, order_id, lambda: ray.get(actors.venues[RAYDIUM].move_price.remote(mint, "SOL", -10.0)))

    order = await journal.get(order_id)
    assert order is not None and order.execution_price is not None and order.execution_price >= 1_030.0
