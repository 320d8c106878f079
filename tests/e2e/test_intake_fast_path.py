"""Order intake's fast path (api.routes.orders.FastExecute) answers as the documented FastAPI route does:
a request with an ``Origin`` header takes the route, one without takes the fast path."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.engine_process import EngineProcess

ORIGIN = {"Origin": "http://example.test"}
GOOD = b'{"tokenIn": "SOL", "tokenOut": "USDC", "amount": 1.5, "orderType": "MARKET"}'


def shape(response: httpx.Response) -> tuple[int, Any]:
    body = response.json()
    if response.status_code == 202:
        return 202, (sorted(body), body["status"], body["orderId"].startswith("order_"))
    return response.status_code, (body["error"], body.get("message"), body.get("details"))


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (GOOD, {"Content-Type": "application/json"}),
        (b"{not json", {"Content-Type": "application/json"}),
        (b'{"tokenIn": "SOL", "tokenOut": "USDC", "amount": -1, "orderType": "MARKET"}', {"Content-Type": "application/json"}),
        (GOOD, {"Content-Type": "text/plain"}),
        (GOOD, {"Content-Type": "application/json", "Idempotency-Key": ""}),
        (GOOD, {"Content-Type": "application/json", "Authorization": "Basic abc"}),
        (GOOD, {"Content-Type": "application/json", "Authorization": "Bearer not-a-key"}),
        (b"x" * 70_000, {"Content-Type": "application/json"}),
    ],
)
async def test_the_fast_path_answers_as_the_route_does(engine: EngineProcess, body: bytes, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=engine.url) as client:
        fast = await client.post("/api/orders/execute", content=body, headers=headers)
        routed = await client.post("/api/orders/execute", content=body, headers={**headers, **ORIGIN})
    assert fast.status_code < 500 and shape(fast) == shape(routed), (fast.text, routed.text)
    assert fast.headers.get("x-request-id") and fast.headers.get("www-authenticate") == routed.headers.get("www-authenticate")


async def test_an_idempotent_replay_is_the_same_order_either_way(engine: EngineProcess, unique: str) -> None:
    headers = {"Content-Type": "application/json", "Idempotency-Key": f"fast-{unique}"}
    async with httpx.AsyncClient(base_url=engine.url) as client:
        first = await client.post("/api/orders/execute", content=GOOD, headers=headers)
        again = await client.post("/api/orders/execute", content=GOOD, headers={**headers, **ORIGIN})
    assert first.status_code == again.status_code == 202
    assert first.json()["orderId"] == again.json()["orderId"]
