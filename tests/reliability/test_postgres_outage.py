"""PostgreSQL down mid-flight (``pg_ctl stop -m immediate`` of a private server), then back.

While it is down: POST answers 503 and stores nothing (not even an Idempotency-Key), /health
answers 503 and names postgres. Orders already running finish their venue work during the
outage; their final state is written, once, when PostgreSQL is back.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import httpx
import pytest

from tests.chain_scan import scan_rpc
from tests.reliability.conftest import Stacks
from tests.reliability.helpers import (
    all_order_ids,
    api_disagreements,
    audit,
    order_body,
    pg_connect,
    redis_leftovers,
    submit_orders,
    wait_status,
    wait_terminal,
)

pytestmark = pytest.mark.slow

ENV = {"OEE_SWAP_LATENCY_MS": "800-1200", "OEE_MAX_CONCURRENT_ORDERS": "10"}
CHAIN_SLOT_S = 0.4
"""A block of the test chain server (its default): a slot times this is the wall time it landed at."""
DOWN_S = 4.0  # longer than a swap: the venue work of the orders in flight ends during the outage


async def test_postgres_down_refuses_new_orders_and_running_ones_finish(stacks: Stacks) -> None:
    stack = stacks.new()
    db = stack.stores.database_url
    engine = stack.engine(**ENV)
    await asyncio.to_thread(engine.start)
    ids, _ = await submit_orders(engine.url, 8)
    await wait_status(db, ids, "submitted", at_least=3, timeout_s=30)

    await asyncio.to_thread(stack.pg.stop, "immediate")
    down_at = time.time()
    key = f"pg-down-{secrets.token_hex(3)}"
    posts: list[tuple[int, float, dict[str, Any]]] = []
    async with httpx.AsyncClient(base_url=engine.url, timeout=30) as client:
        health = await client.get("/health")
        for i in range(6):
            started = time.monotonic()
            response = await client.post("/api/orders/execute", json=order_body(500), headers={"Idempotency-Key": key} if i % 2 else {})
            posts.append((response.status_code, time.monotonic() - started, response.json()))
        lookup = await client.get(f"/api/orders/{ids[0]}")  # Redis has it: still answerable
    await asyncio.sleep(max(0.0, DOWN_S - (time.time() - down_at)))
    await asyncio.to_thread(stack.pg.start)
    up_at = time.time()

    await wait_terminal(db, ids, timeout_s=60)
    written_s = time.time() - up_at
    result = await audit(db, ids, stack.chain.url)
    # A transaction is persisted before it is sent: whatever landed while PostgreSQL was down was stored before.
    landed = [tx for tx in await scan_rpc(stack.chain.url) if tx.error is None and tx.memo in set(ids)]
    during = [tx for tx in landed if down_at <= tx.slot * CHAIN_SLOT_S <= up_at]
    conn = await pg_connect(db)
    try:
        saved = {
            r["signature"]: float(r["saved"])
            for r in await conn.fetch(
                "SELECT signature, extract(epoch from saved_at) AS saved FROM order_settlements WHERE order_id = any($1::text[])", ids
            )
        }
    finally:
        await conn.close()
    unsaved = [tx.signature for tx in during if tx.signature not in saved or saved[tx.signature] > down_at]
    stored = await all_order_ids(db)
    left = await redis_leftovers(stack.stores, ids)
    async with httpx.AsyncClient(base_url=engine.url, timeout=30) as client:
        deadline = time.monotonic() + 60
        while (healthy := await client.get("/health")).status_code != 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        retry = await client.post("/api/orders/execute", json=order_body(500), headers={"Idempotency-Key": key})

    codes = [code for code, _, _ in posts]
    slowest = max(t for _, t, _ in posts)
    checks = health.json().get("checks", {})
    print(
        f"\npostgres down {up_at - down_at:.1f} s with {len(ids)} orders in flight: /health {health.status_code} "
        f"postgres={checks.get('postgres', '?')[:60]!r}; POST x{len(posts)} -> {sorted(set(codes))} (slowest {slowest:.2f} s); "
        f"GET of an order {lookup.status_code}; swaps that landed during the outage {len(during)}; all final states written "
        f"{written_s:.1f} s after PostgreSQL came back; rows {len(stored)} for {len(ids)} accepted"
    )
    print(f"postgres: {result.line()}")
    assert health.status_code == 503 and checks.get("postgres") != "ok" and checks.get("redis") == "ok", health.text
    assert "postgres" in health.json().get("failing", ["postgres"])
    assert codes == [503] * len(posts), posts
    assert all(body.get("error") and "postgres" in body.get("message", "") for _, _, body in posts), posts
    assert slowest < 10, f"a POST took {slowest:.1f} s to be refused"
    assert lookup.status_code in (200, 503), lookup.text  # from Redis, or a clean 503; never a 500
    assert not result.problems(), result.problems()
    assert result.by_status["confirmed"] == len(ids), (dict(result.by_status), dict(result.failure_reasons))
    assert not unsaved, f"landed while PostgreSQL was down without having been stored first: {unsaved}"
    assert {tx.memo for tx in landed} == set(ids) and len(landed) == len(ids)
    assert sorted(stored) == sorted(ids), "an order was stored while PostgreSQL was down (or an accepted one is missing)"
    stale = await api_disagreements(engine.url, db, ids)
    assert not stale, f"GET /api/orders/{{id}} disagrees with PostgreSQL (seen, truth): {stale}"
    assert left["active"] == [] and left["queued"] == [] and left["orphan_keys"] == [], left
    assert healthy.status_code == 200, healthy.text
    # The 503 did not consume the Idempotency-Key: the client's retry now creates the order.
    assert retry.status_code == 202 and "already accepted" not in retry.json()["message"], retry.text
    retried = str(retry.json()["orderId"])
    await wait_terminal(db, [retried], timeout_s=30)
    assert (await audit(db, [retried], stack.chain.url)).by_status["confirmed"] == 1
