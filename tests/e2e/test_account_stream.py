"""The account-wide event stream (WS /api/stream) over real WebSockets: every event of every order with
an increasing eventId, filters, and resuming with ?since= without missing or repeating anything."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import websockets

from tests.e2e.test_orders import submit
from tests.engine_process import EngineProcess

TERMINAL = {"confirmed", "failed", "cancelled", "expired"}


async def collect(ws: Any, until: Any, timeout_s: float = 90.0) -> list[dict[str, Any]]:
    """Events from an open stream until ``until(events)`` holds."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s):
        while not until(events):
            message = json.loads(await ws.recv())
            if message.get("type") == "event":
                events.append(message)
    return events


def finished(order_ids: list[str]) -> Any:
    return lambda events: {e["orderId"] for e in events if e["status"] in TERMINAL} >= set(order_ids)


async def test_every_event_of_every_order_in_event_id_order(engine: EngineProcess) -> None:
    async with websockets.connect(f"{engine.ws_url}/api/stream") as ws:
        connected = json.loads(await ws.recv())
        assert connected["type"] == "connected" and isinstance(connected["eventId"], int)
        async with httpx.AsyncClient(base_url=engine.url) as client:
            ids = [await submit(client) for _ in range(3)]
        events = await collect(ws, finished(ids))
    ours = [e for e in events if e["orderId"] in ids]
    event_ids = [e["eventId"] for e in events]
    assert event_ids == sorted(event_ids) and len(set(event_ids)) == len(event_ids)
    assert all(e["eventId"] > connected["eventId"] for e in events)
    for order_id in ids:
        assert [e["status"] for e in ours if e["orderId"] == order_id] == ["pending", "routing", "building", "submitted", "confirmed"]


async def test_resuming_with_since_misses_and_repeats_nothing(engine: EngineProcess) -> None:
    async with websockets.connect(f"{engine.ws_url}/api/stream") as ws:
        start = json.loads(await ws.recv())["eventId"]
        async with httpx.AsyncClient(base_url=engine.url) as client:
            ids = [await submit(client) for _ in range(2)]
        first = await collect(ws, lambda events: len([e for e in events if e["orderId"] in ids]) >= 3)
    cut = first[-1]["eventId"]  # the client goes away here; the orders go on
    async with websockets.connect(f"{engine.ws_url}/api/stream?since={cut}") as ws:
        connected = json.loads(await ws.recv())
        assert connected["eventId"] == cut
        rest = await collect(ws, finished(ids))
    async with websockets.connect(f"{engine.ws_url}/api/stream?since={start}") as ws:
        await ws.recv()
        everything = await collect(ws, finished(ids))
    assert [e["eventId"] for e in first + rest] == [e["eventId"] for e in everything if e["eventId"] <= rest[-1]["eventId"]]


async def test_filters_by_status_and_order_type(engine: EngineProcess) -> None:
    async with websockets.connect(f"{engine.ws_url}/api/stream?status=confirmed,failed&orderType=MARKET") as ws:
        await ws.recv()
        async with httpx.AsyncClient(base_url=engine.url) as client:
            waiting = await submit(client, {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 1, "orderType": "LIMIT", "limitPrice": 1e6})
            ids = [await submit(client) for _ in range(2)]
            cancelled = await client.delete(f"/api/orders/{waiting}")
        events = await collect(ws, finished(ids))
    assert cancelled.status_code in (200, 202)
    assert {e["status"] for e in events} <= {"confirmed", "failed"}
    assert {e["orderId"] for e in events} >= set(ids)
    assert waiting not in {e["orderId"] for e in events}  # a LIMIT order, and cancelled: filtered out twice


async def test_a_bad_query_is_refused_with_4400(engine: EngineProcess) -> None:
    for query in ("since=-1", "status=nope", "orderType=STOP"):
        async with websockets.connect(f"{engine.ws_url}/api/stream?{query}") as ws:
            error = json.loads(await ws.recv())
            assert error["type"] == "error", query
            await ws.wait_closed()
            assert ws.close_code == 4400, query


async def test_ping_gets_a_pong(engine: EngineProcess) -> None:
    async with websockets.connect(f"{engine.ws_url}/api/stream") as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong"
