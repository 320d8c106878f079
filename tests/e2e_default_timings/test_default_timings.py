"""One order at the engine's default settings (quote ~200 ms, swap 2-3 s): the defaults work as shipped."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import TestStores
from tests.e2e.wsclient import follow, statuses
from tests.engine_process import EngineProcess

pytestmark = pytest.mark.slow


async def test_one_order_at_default_timings(stores: TestStores) -> None:
    engine = EngineProcess(stores, {})
    engine.start()
    try:
        async with httpx.AsyncClient(base_url=engine.url) as client:
            response = await client.post(
                "/api/orders/execute", json={"tokenIn": "SOL", "tokenOut": "USDC", "amount": 1, "orderType": "MARKET"}
            )
            assert response.status_code == 202
            order_id = response.json()["orderId"]
        messages, code = await follow(engine.ws_url, order_id, timeout_s=60)
    finally:
        exit_code = engine.stop()
        engine.discard()
        assert exit_code == 0
    at = {m["status"]: m["timestamp"] for m in messages if m.get("type") == "status"}
    assert statuses(messages) == ["pending", "routing", "building", "submitted", "confirmed"] and code == 1000, messages[-2:]
    routing_ms = at["building"] - at["routing"]
    swap_ms = at["confirmed"] - at["submitted"]
    print(f"default timings: routing {routing_ms:.0f} ms (one 200 ms quote), swap {swap_ms:.0f} ms (2000-3000 ms)")
    assert 200 <= routing_ms < 400  # both quotes in parallel: about one quote's latency
    assert 2000 <= swap_ms < 3500
