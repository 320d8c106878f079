"""Submitting orders straight into the stores (no HTTP) and waiting for them, for the cluster tier
and ``loadtest/scale_bench.py``."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from engine.adapters.postgres import PostgresJournal
from engine.intake import Accepted, OrderIntake
from engine.lifecycle import is_terminal
from engine.models import Order, OrderEvent, OrderRequest, OrderStatus, OrderType
from engine.settings import Settings
from tests.chain_scan import scan_node


def engine_settings(database_url: str, redis_url: str, redis_prefix: str, **overrides: Any) -> Settings:
    """Settings for an engine on the test cluster: no rate limit unless asked, quiet logs."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "database_url": database_url,
        "redis_prefix": redis_prefix,
        "rate_limit_per_minute": 1e9,
        "rate_limit_burst": 100_000,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)


SLIPPAGE_BPS = int(os.environ.get("OEE_TEST_SLIPPAGE_BPS", "500"))
"""Tolerated slippage of the orders these tests submit (5 %): dozens of orders hit the same two
simulated pools at once and move their price; these tests are about where orders run, not about
slippage, so an order fails only for the reasons under test. OEE_TEST_SLIPPAGE_BPS=50 (the API's
default) shows the market's effect as well."""


async def submit(intake: OrderIntake, count: int, slippage_bps: int = SLIPPAGE_BPS) -> list[str]:
    """``count`` small market orders, alternating SOL->USDC and USDC->SOL (both venues trade them)."""
    ids = []
    for i in range(count):
        if i % 2 == 0:
            request = OrderRequest(
                token_in="SOL", token_out="USDC", amount=0.5 + (i % 5) * 0.1, slippage_bps=slippage_bps, order_type=OrderType.MARKET
            )
        else:
            request = OrderRequest(
                token_in="USDC", token_out="SOL", amount=60.0 + (i % 5) * 10, slippage_bps=slippage_bps, order_type=OrderType.MARKET
            )
        outcome = await intake.submit(request, time.time() * 1000)
        assert isinstance(outcome, Accepted), outcome
        ids.append(outcome.order_id)
    return ids


async def wait_terminal(journal: PostgresJournal, ids: list[str], timeout_s: float) -> dict[str, list[OrderEvent]]:
    """Every order's events once all are terminal; AssertionError naming the stuck ones otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        orders = [await journal.get(i) for i in ids]
        if all(o is not None and is_terminal(o.status) for o in orders):
            return {i: await journal.events(i) for i in ids}
        if time.monotonic() > deadline:
            stuck = {o.order_id: o.status.value for o in orders if o is not None and not is_terminal(o.status)}
            raise AssertionError(f"orders not terminal after {timeout_s}s: {stuck}")
        await asyncio.sleep(0.1)


async def wait_statuses(journal: PostgresJournal, ids: list[str], wanted: set[OrderStatus], count: int, timeout_s: float) -> int:
    """Wait until at least ``count`` orders are in one of ``wanted``; return how many are."""
    deadline = time.monotonic() + timeout_s
    while True:
        orders = [await journal.get(i) for i in ids]
        n = sum(1 for o in orders if o is not None and o.status in wanted)
        if n >= count:
            return n
        if time.monotonic() > deadline:
            raise AssertionError(f"only {n} of {len(ids)} orders reached {sorted(wanted)} in {timeout_s}s")
        await asyncio.sleep(0.05)


async def check_swaps(chain: Any, order: Order) -> int:
    """The swap invariant, read on the chain (the ChainNode's transactions, by memo): an order has at
    most one landed transaction; a confirmed order's is the one it reports (with every leg of its
    route in it), a failed order has none. Returns the number of legs swapped."""
    landed = [tx for tx in await scan_node(chain) if tx.memo == order.order_id and tx.error is None]
    assert len(landed) <= 1, f"{order.order_id} landed {len(landed)} transactions"
    if order.status is OrderStatus.CONFIRMED:
        assert len(landed) == 1 and landed[0].signature == order.tx_hash, (order.order_id, order.tx_hash, landed)
        return len(order.tx_hashes or [order.tx_hash])
    assert not landed, f"{order.order_id} is {order.status.value} but landed {landed[0].signature}: {order.failure_reason}"
    return 0
