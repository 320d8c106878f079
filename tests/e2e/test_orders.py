"""Orders through the running engine, over real HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
import websockets

from tests.e2e.wsclient import follow, statuses
from tests.engine_process import EngineProcess

HAPPY = ["pending", "routing", "building", "submitted", "confirmed"]


async def submit(client: httpx.AsyncClient, body: dict[str, Any] | None = None, **headers: str) -> str:
    response = await client.post(
        "/api/orders/execute", json=body or {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 3, "orderType": "MARKET"}, headers=headers
    )
    assert response.status_code == 202, response.text
    payload = response.json()
    assert payload["status"] == "pending" and payload["orderId"].startswith("order_")
    return str(payload["orderId"])


async def test_full_lifecycle_persists_and_leaves_the_active_set(engine: EngineProcess) -> None:
    async with httpx.AsyncClient(base_url=engine.url) as client:
        order_id = await submit(client)
        messages, code = await follow(engine.ws_url, order_id)
        order = (await client.get(f"/api/orders/{order_id}")).json()
    assert messages[0]["type"] == "connected" and messages[0]["orderId"] == order_id
    assert statuses(messages) == HAPPY
    assert code == 1000
    building = next(m for m in messages if m.get("status") == "building")
    decision = building["data"]["routingDecision"]
    quotes = [decision["raydiumQuote"], decision["meteoraQuote"]]
    assert [q["dex"] for q in quotes] == ["RAYDIUM", "METEORA"]
    assert decision["selectedDex"] in ("RAYDIUM", "METEORA") and decision["selectionReason"]
    best = max(quotes, key=lambda q: q["amountOut"])
    assert decision["selectedDex"] == best["dex"]
    confirmed = messages[-1]["data"]
    assert confirmed["txHash"] and confirmed["executionPrice"] > 0 and confirmed["executionAmount"] > 0
    assert confirmed["routingDecision"] == decision
    assert order["status"] == "confirmed" and order["txHash"] == confirmed["txHash"] and order["attempts"] == 1
    assert order["exchangeId"] == decision["selectedDex"] and order["routingDecision"] == decision

    conn = await asyncpg.connect(engine.stores.database_url)
    try:
        row = await conn.fetchrow("SELECT status, tx_hash FROM orders WHERE order_id = $1", order_id)
        trail = [r["status"] for r in await conn.fetch("SELECT status FROM order_events WHERE order_id = $1 ORDER BY seq", order_id)]
    finally:
        await conn.close()
    assert row["status"] == "confirmed" and row["tx_hash"] == confirmed["txHash"]
    assert trail == HAPPY
    async with httpx.AsyncClient(base_url=engine.url) as client:
        landed = (await client.get(f"/api/chain/orders/{order_id}")).json()["transactions"]
        tx = (await client.get(f"/api/chain/tx/{confirmed['txHash']}")).json()
        wallet = (await client.get("/api/wallet")).json()
    assert [t["signature"] for t in landed] == [confirmed["txHash"]] and landed[0]["succeeded"]
    assert tx["orderId"] == order_id and tx["memo"] == order_id and tx["signers"][0] == wallet["address"]
    mine = {c["token"]: c["change"] for c in tx["tokenChanges"] if c["owner"] == wallet["address"]}
    assert mine["SOL"] == pytest.approx(-3.0)  # the order sold 3 SOL: the chain says so, in its own units
    assert mine["USDC"] == pytest.approx(confirmed["executionAmount"])
    redis = aioredis.Redis.from_url(engine.stores.redis_url)
    try:
        assert not await redis.sismember(f"{engine.stores.redis_prefix}active", order_id)
    finally:
        await redis.aclose()


async def test_many_clients_on_one_order_see_the_same_sequence_and_it_runs_once(engine: EngineProcess) -> None:
    async with httpx.AsyncClient(base_url=engine.url) as client:
        order_id = await submit(client)
        results = await asyncio.gather(*(follow(engine.ws_url, order_id) for _ in range(6)))
    sequences = [[(m["seq"], m["status"]) for m in msgs if m["type"] == "status"] for msgs, _ in results]
    assert all(seq == sequences[0] for seq in sequences)
    assert [s for _, s in sequences[0]] == HAPPY
    assert all(code == 1000 for _, code in results)
    async with httpx.AsyncClient(base_url=engine.url) as client:
        landed = (await client.get(f"/api/chain/orders/{order_id}")).json()["transactions"]
    assert len([t for t in landed if t["succeeded"]]) == 1  # counted on the chain


async def test_late_join_replays_the_whole_history(engine: EngineProcess) -> None:
    async with httpx.AsyncClient(base_url=engine.url) as client:
        order_id = await submit(client)
        first, _ = await follow(engine.ws_url, order_id)
        late, code = await follow(engine.ws_url, order_id)  # after the terminal event
    assert statuses(late) == HAPPY == statuses(first)
    assert [m["seq"] for m in late if m["type"] == "status"] == [1, 2, 3, 4, 5]
    assert code == 1000


async def test_unfillable_order_retries_visibly_then_fails_and_is_persisted(engine: EngineProcess) -> None:
    body = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 5_000_000, "orderType": "MARKET"}
    async with httpx.AsyncClient(base_url=engine.url) as client:
        order_id = await submit(client, body)
        messages, code = await follow(engine.ws_url, order_id)
        order = (await client.get(f"/api/orders/{order_id}")).json()
    routing = [m for m in messages if m.get("status") == "routing"]
    assert [m["attempt"] for m in routing] == [1, 2, 3]
    assert routing[0]["message"] == "Fetching quotes from DEXs"  # why the previous attempt failed, on each retry
    assert all(m["message"].startswith("Fetching quotes from DEXs (attempt ") and "previous attempt: " in m["message"] for m in routing[1:])
    assert statuses(messages)[-1] == "failed" and code == 1000
    reason = messages[-1]["data"]["failureReason"]
    assert "after 3 attempts" in reason and messages[-1]["message"] == reason
    assert order["status"] == "failed" and order["failureReason"] == reason and order["attempts"] == 3
    assert order["failedAt"] == messages[-1]["timestamp"]


async def test_ping_gets_pong_while_following(engine: EngineProcess) -> None:
    body = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 5_000_000, "orderType": "MARKET"}  # retries for ~1 s
    async with httpx.AsyncClient(base_url=engine.url) as client:
        order_id = await submit(client, body)
    async with websockets.connect(f"{engine.ws_url}/api/orders/{order_id}/status") as ws:
        assert json.loads(await ws.recv())["type"] == "connected"
        await ws.send(json.dumps({"type": "ping"}))
        seen = []
        async with asyncio.timeout(60):
            while True:
                message = json.loads(await ws.recv())
                seen.append(message["type"])
                if message["type"] == "pong":
                    break
    assert "pong" in seen


async def test_unknown_and_malformed_ids_are_refused_with_4404(engine: EngineProcess) -> None:
    for order_id in ("order_1764000000000_deadbeef", "not-an-id", "x" * 2000):
        messages, code = await follow(engine.ws_url, order_id)
        assert messages == [{"type": "error", "message": "order not found"}]
        assert code == 4404
    async with httpx.AsyncClient(base_url=engine.url) as client:
        response = await client.get("/api/orders/order_1764000000000_deadbeef")
        assert response.status_code == 404 and response.json()["error"] == "Not found"


async def test_health_docs_and_openapi(engine: EngineProcess) -> None:
    async with httpx.AsyncClient(base_url=engine.url) as client:
        health = await client.get("/health")
        docs = await client.get("/docs")
        spec = (await client.get("/openapi.json")).json()
    assert health.status_code == 200
    assert health.json()["checks"] == {"redis": "ok", "postgres": "ok", "ray": "ok"}
    assert docs.status_code == 200
    assert "/api/orders/execute" in spec["paths"] and "OrderRequest" in spec["components"]["schemas"]


async def test_idempotency_key_returns_the_first_order(engine: EngineProcess, unique: str) -> None:
    body = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 1.5, "orderType": "MARKET"}
    async with httpx.AsyncClient(base_url=engine.url) as client:
        first = await submit(client, body, **{"Idempotency-Key": unique})
        again = await client.post("/api/orders/execute", json=body, headers={"Idempotency-Key": unique})
        other = await client.post("/api/orders/execute", json={**body, "amount": 2}, headers={"Idempotency-Key": unique})
        concurrent = await asyncio.gather(
            *(client.post("/api/orders/execute", json=body, headers={"Idempotency-Key": unique + "-c"}) for _ in range(8))
        )
    assert again.status_code == 202 and again.json()["orderId"] == first
    assert other.status_code == 422
    assert {r.status_code for r in concurrent} == {202}
    assert len({r.json()["orderId"] for r in concurrent}) == 1


async def test_a_retried_request_with_the_same_request_id_creates_one_order(engine: EngineProcess, unique: str) -> None:
    """Serve's proxy keeps a request's id when it retries it: the id doubles as an idempotency key."""
    body = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 1.25, "orderType": "MARKET"}
    headers = {"x-request-id": f"retry-{unique}"}
    async with httpx.AsyncClient(base_url=engine.url) as client:
        first = await client.post("/api/orders/execute", json=body, headers=headers)
        retried = await client.post("/api/orders/execute", json=body, headers=headers)
        fresh = await client.post("/api/orders/execute", json=body)
    assert first.status_code == retried.status_code == fresh.status_code == 202
    assert retried.json()["orderId"] == first.json()["orderId"] != fresh.json()["orderId"]
