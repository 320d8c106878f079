"""An engine that dispatches slowly (one order at a time, two a second), so orders really wait in the
queue: the queue cap answers 503 with Retry-After, a halt dispatches nothing while queued orders stay
queued, resuming lets them flow, and a MARKET order not started within its maximum age ends expired."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import Services, TestStores
from tests.e2e_auth.conftest import ADMIN_KEY, FAST, bearer, own_stores, resume_everything, start_engine
from tests.engine_process import EngineProcess

pytestmark = pytest.mark.slow

MAX_AGE_S = 30
SLOW = {
    **FAST,
    "OEE_INGRESS_REPLICAS": "1",
    "OEE_MAX_CONCURRENT_ORDERS": "1",
    "OEE_RATE_LIMIT_PER_MINUTE": "120",
    "OEE_RATE_LIMIT_BURST": "1",
    "OEE_MAX_QUEUED_ORDERS": "6",
    "OEE_MARKET_MAX_AGE_S": str(MAX_AGE_S),
}
ORDER = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 0.5, "orderType": "MARKET"}
TERMINAL = {"confirmed", "failed", "cancelled", "expired"}


@pytest.fixture(scope="module")
def slow_stores(services: Services) -> Iterator[TestStores]:
    yield from own_stores(services, "slow")


@pytest.fixture(scope="module")
def slow_engine(slow_stores: TestStores) -> Iterator[EngineProcess]:
    yield from start_engine(slow_stores, SLOW)


@pytest.fixture
async def client(slow_engine: EngineProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=slow_engine.url, headers=bearer(ADMIN_KEY), timeout=30) as http:
        yield http
        await resume_everything(http)


async def started(database_url: str, ids: list[str]) -> dict[str, float]:
    """Order id -> when it first started routing (epoch ms), for the orders that did."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT order_id, min(extract(epoch from created_at) * 1000) AS at FROM order_events "
            "WHERE order_id = ANY($1::text[]) AND status = 'routing' GROUP BY order_id",
            ids,
        )
    finally:
        await conn.close()
    return {row["order_id"]: float(row["at"]) for row in rows}


async def until_terminal(client: httpx.AsyncClient, ids: list[str], timeout_s: float = 90) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        orders = {i: (await client.get(f"/api/orders/{i}")).json() for i in ids}
        if all(o["status"] in TERMINAL for o in orders.values()):
            return orders
        assert time.monotonic() < deadline, {i: o["status"] for i, o in orders.items()}
        await asyncio.sleep(0.2)


async def test_the_queue_cap_answers_503_with_retry_after(slow_engine: EngineProcess, client: httpx.AsyncClient) -> None:
    answers = [await client.post("/api/orders/execute", json=ORDER) for _ in range(16)]
    accepted = [r.json()["orderId"] for r in answers if r.status_code == 202]
    full = [r for r in answers if r.status_code == 503]
    assert len(accepted) + len(full) == 16 and full, [r.status_code for r in answers]
    assert full[0].json()["error"] == "Service unavailable" and "queued orders" in full[0].json()["message"]
    assert int(full[0].headers["retry-after"]) >= 1
    orders = await until_terminal(client, accepted)
    assert {o["status"] for o in orders.values()} == {"confirmed"}
    print(f"\nqueue cap 6: 16 POSTs at once -> {len(accepted)} x 202, {len(full)} x 503 (Retry-After {full[0].headers['retry-after']} s)")


async def test_a_halt_dispatches_nothing_and_resuming_lets_the_queue_flow(slow_engine: EngineProcess, client: httpx.AsyncClient) -> None:
    ids = [(await client.post("/api/orders/execute", json=ORDER)).json()["orderId"] for _ in range(5)]
    halted = await client.put("/api/admin/trading-state", json={"state": "halted", "reason": "drill"})
    assert halted.status_code == 200
    await asyncio.sleep(2.0)  # whatever was already handed to an executor has begun by now
    before = await started(slow_engine.stores.database_url, ids)
    await asyncio.sleep(4.0)  # eight dispatch slots at 2/s: none may be used
    after = await started(slow_engine.stores.database_url, ids)
    statuses = {i: (await client.get(f"/api/orders/{i}")).json()["status"] for i in ids}
    assert after == before, f"orders started while halted: {set(after) - set(before)}"
    waiting = [i for i in ids if i not in after]
    assert waiting and all(statuses[i] == "pending" for i in waiting), statuses
    assert (await client.post("/api/orders/execute", json=ORDER)).status_code == 503
    await client.put("/api/admin/trading-state", json={"state": "active", "reason": "drill over"})
    orders = await until_terminal(client, ids)
    assert {o["status"] for o in orders.values()} == {"confirmed"}, orders
    print(f"\nhalt: {len(before)} of 5 had started, {len(waiting)} stayed pending for 4 s; after resuming all confirmed")


async def test_a_market_order_not_started_within_its_maximum_age_expires(slow_engine: EngineProcess, client: httpx.AsyncClient) -> None:
    ids = [(await client.post("/api/orders/execute", json=ORDER)).json()["orderId"] for _ in range(3)]
    first = (await client.get(f"/api/orders/{ids[0]}")).json()
    assert first["expiresAt"]  # MARKET orders get OEE_MARKET_MAX_AGE_S
    await client.put("/api/admin/trading-state", json={"state": "halted", "reason": "long drill"})
    await asyncio.sleep(MAX_AGE_S + 2)
    await client.put("/api/admin/trading-state", json={"state": "active", "reason": "long drill over"})
    orders = await until_terminal(client, ids)
    begun = await started(slow_engine.stores.database_url, ids)
    expired = [i for i, o in orders.items() if o["status"] == "expired"]
    assert expired and all(i not in begun for i in expired), (orders, begun)
    assert all(orders[i]["status"] == "expired" for i in ids if i not in begun)
    print(f"\nmax age {MAX_AGE_S} s: after a {MAX_AGE_S + 2} s halt, {len(expired)} of 3 queued MARKET orders ended expired")
