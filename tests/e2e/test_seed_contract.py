"""The seed system's wire contract, over real HTTP and WebSocket: a client written for the seed reads
every body and message it knows, with its field names, types and units (epoch-ms times, upper-case dex)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
import websockets

from tests.e2e.wsclient import follow, statuses
from tests.engine_process import EngineProcess

AMOUNT = 2.5
MARKET = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": AMOUNT, "orderType": "MARKET"}
DEXES = {"RAYDIUM", "METEORA"}
SEED_QUOTE = {"dex", "price", "fee", "netPrice", "amountOut", "liquidity"}
SEED_DECISION = {"selectedDex", "raydiumQuote", "meteoraQuote", "selectionReason", "routingTimestamp"}
DATA_KEYS = {
    "pending": set(),
    "routing": set(),
    "building": {"routingDecision"},
    "submitted": {"routingDecision"},
    "confirmed": {"routingDecision", "txHash", "txHashes", "executionPrice", "executionAmount"},
}


def assert_recent_ms(value: Any) -> None:
    """An epoch-milliseconds number (not a string), within a minute of now."""
    assert isinstance(value, int | float) and not isinstance(value, bool), value
    assert abs(value - time.time() * 1000) < 60_000, value


def assert_seed_decision(decision: dict[str, Any], amount: float) -> None:
    assert set(decision) >= SEED_DECISION, decision
    assert decision["selectedDex"] in DEXES and isinstance(decision["selectionReason"], str) and decision["selectionReason"]
    assert_recent_ms(decision["routingTimestamp"])
    for key, dex in (("raydiumQuote", "RAYDIUM"), ("meteoraQuote", "METEORA")):
        quote = decision[key]
        assert set(quote) >= SEED_QUOTE and quote["dex"] == dex, quote
        assert all(isinstance(quote[f], float | int) for f in SEED_QUOTE - {"dex"}), quote
        assert quote["netPrice"] == pytest.approx(quote["amountOut"] / amount)  # after fees
        assert 0 < quote["fee"] < amount * 0.05  # an amount of tokenIn, not a rate (pool fees are a few % at most)
        assert quote["price"] > quote["netPrice"]  # the pool's price before fees and impact
    # what the seed lacks, beside it: the route (selectedDex is its larger leg)
    assert decision["legs"][0]["dex"] == decision["selectedDex"]
    assert sum(leg["percent"] for leg in decision["legs"]) == pytest.approx(100.0)
    assert decision["amountOut"] >= max(decision["raydiumQuote"]["amountOut"], decision["meteoraQuote"]["amountOut"]) * (1 - 1e-9)


async def test_a_market_order_streams_the_seed_messages_and_reads_back_as_an_active_order(engine: EngineProcess) -> None:
    async with httpx.AsyncClient(base_url=engine.url) as client:
        response = await client.post("/api/orders/execute", json=MARKET)
        assert response.status_code == 202, response.text
        accepted = response.json()
        order_id = accepted["orderId"]
        messages, code = await follow(engine.ws_url, order_id)
        order = (await client.get(f"/api/orders/{order_id}")).json()
    assert accepted["status"] == "pending" and isinstance(accepted["message"], str)
    assert code == 1000

    connected, *updates = messages
    assert set(connected) == {"type", "orderId", "timestamp", "message"}
    assert (connected["type"], connected["orderId"], connected["message"]) == ("connected", order_id, "Connected to order status stream")
    assert_recent_ms(connected["timestamp"])

    assert statuses(messages) == ["pending", "routing", "building", "submitted", "confirmed"]
    for update in updates:
        status = update["status"]
        assert update["orderId"] == order_id and update["type"] == "status"
        assert_recent_ms(update["timestamp"])
        assert isinstance(update["message"], str) and update["message"], update
        assert set(update.get("data", {})) == DATA_KEYS[status], update
        assert {"ts", "reason", "error", "routingDecision", "txHash"}.isdisjoint(update), update  # each fact once: in data
        for decision in [update["data"]["routingDecision"]] if "routingDecision" in update.get("data", {}) else []:
            assert_seed_decision(decision, AMOUNT)
    times = [u["timestamp"] for u in updates]
    assert times == sorted(times)
    by_status = {u["status"]: u for u in updates}
    decision = by_status["building"]["data"]["routingDecision"]
    assert by_status["routing"]["timestamp"] <= decision["routingTimestamp"] <= by_status["building"]["timestamp"]
    assert by_status["submitted"]["data"]["routingDecision"] == decision == by_status["confirmed"]["data"]["routingDecision"]
    assert by_status["routing"]["attempt"] == 1
    assert by_status["submitted"]["message"].startswith("Transaction") and decision["selectedDex"] in by_status["submitted"]["message"]
    done = by_status["confirmed"]["data"]
    assert isinstance(done["txHash"], str) and done["txHashes"][0] == done["txHash"]
    assert done["executionPrice"] > 0 and done["executionAmount"] == pytest.approx(done["executionPrice"] * AMOUNT)

    # GET /api/orders/{id}: the seed's ActiveOrder, times as epoch-ms numbers, exchangeId the selected dex
    assert {k: order[k] for k in ("orderId", "tokenIn", "tokenOut", "amount", "orderType", "status")} == {
        "orderId": order_id,
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amount": 2.5,
        "orderType": "MARKET",
        "status": "confirmed",
    }
    assert order["submittedAt"] == by_status["pending"]["timestamp"] and order["executedAt"] == by_status["confirmed"]["timestamp"]
    assert_recent_ms(order["submittedAt"])
    assert order["exchangeId"] == decision["selectedDex"]
    assert (order["txHash"], order["executionPrice"], order["executionAmount"]) == (
        done["txHash"],
        done["executionPrice"],
        done["executionAmount"],
    )
    assert order["routingDecision"] == decision
    assert "failedAt" not in order and "failureReason" not in order


async def test_ping_gets_the_seed_pong_and_a_cancelled_order_says_why(engine: EngineProcess) -> None:
    body = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 1, "orderType": "LIMIT", "limitPrice": 1e9}  # never reached
    async with httpx.AsyncClient(base_url=engine.url) as client:
        order_id = (await client.post("/api/orders/execute", json=body)).json()["orderId"]
        async with websockets.connect(f"{engine.ws_url}/api/orders/{order_id}/status") as ws:
            assert json.loads(await ws.recv())["type"] == "connected"
            await ws.send(json.dumps({"type": "ping"}))
            seen: list[dict[str, Any]] = []
            async with asyncio.timeout(60):
                while not ({"pong", "waiting"} <= {m.get("status", m["type"]) for m in seen}):
                    seen.append(json.loads(await ws.recv()))
            pong = next(m for m in seen if m["type"] == "pong")
            assert set(pong) == {"type", "timestamp"}
            assert_recent_ms(pong["timestamp"])
            waiting = next(m for m in seen if m.get("status") == "waiting")
            assert waiting["message"].startswith("waiting for")
            # 200 once closed; 202 if it has not closed within the call's short wait (a loaded machine)
            assert (await client.delete(f"/api/orders/{order_id}")).status_code in (200, 202)
            async with asyncio.timeout(60):
                while (message := json.loads(await ws.recv())).get("status") != "cancelled":
                    pass
    assert message["message"] == "cancelled by the client" and "data" not in message
    assert_recent_ms(message["timestamp"])


async def test_health_has_an_epoch_ms_timestamp(engine: EngineProcess) -> None:
    async with httpx.AsyncClient(base_url=engine.url) as client:
        health = (await client.get("/health")).json()
    assert health["status"] == "ok"
    assert_recent_ms(health["timestamp"])
    assert isinstance(health["timestamp"], int)  # Date.now(): a whole number of ms
    assert health["checks"] == {"redis": "ok", "postgres": "ok", "ray": "ok"}


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        ({"tokenIn": "SOL", "tokenOut": "USDC", "amount": 1}, [["orderType"]]),
        ({"tokenIn": "SOL", "tokenOut": "USDC", "amount": 0}, [["amount"], ["orderType"]]),
    ],
    ids=["only-orderType", "with-another-problem"],
)
async def test_an_order_without_order_type_is_a_400_at_order_type(
    engine: EngineProcess, body: dict[str, Any], paths: list[list[str]]
) -> None:
    async with httpx.AsyncClient(base_url=engine.url) as client:
        response = await client.post("/api/orders/execute", json=body)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["error"] == "Validation failed"
    assert [d["path"] for d in payload["details"]] == paths
    assert next(d for d in payload["details"] if d["path"] == ["orderType"])["code"] == "missing"
