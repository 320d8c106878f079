"""The Python client without an engine: the wire shapes it reads, the errors it raises, the requests it
sends (an httpx mock transport stands in for the engine)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from clients import AsyncClient, NotFound, RiskDenied, TooManyRequests, TradingHalted
from clients.errors import BadRequest, Conflict, Unauthorized, error_for
from clients.models import ActiveOrder, StreamEvent, as_update

DECISION = {
    "selectedDex": "METEORA",
    "raydiumQuote": {"dex": "RAYDIUM", "price": 150.0, "fee": 0.00375, "netPrice": 149.8, "amountOut": 224.7, "liquidity": 1e7},
    "meteoraQuote": {"dex": "METEORA", "price": 153.0, "fee": 0.003, "netPrice": 152.7, "amountOut": 229.05, "liquidity": 6e6},
    "selectionReason": "meteora gives 229.05 USDC vs raydium 224.7",
    "routingTimestamp": 1_796_000_000_000,
    "legs": [{"dex": "METEORA", "amountIn": 1.5, "amountOut": 229.05, "percent": 100.0}],
    "rejected": {},
    "minAmountOut": 227.9,
    "amountOut": 229.05,
}


def test_a_decision_exposes_every_venues_quote() -> None:
    update = as_update(
        {
            "type": "status",
            "orderId": "order_1796000000000_0000abcd",
            "status": "building",
            "timestamp": 1_796_000_000_100,
            "message": "Routing to METEORA",
            "data": {"routingDecision": DECISION},
            "seq": 3,
        }
    )
    assert update is not None and not update.terminal
    decision = update.data.routing_decision
    assert decision is not None and set(decision.quotes) == {"RAYDIUM", "METEORA"}
    assert decision.quotes["METEORA"].net_price == 152.7
    assert as_update({"type": "connected", "orderId": "x", "timestamp": 1}) is None
    event = as_update({"type": "event", "eventId": 7, "orderId": "o", "status": "confirmed", "timestamp": 1.0, "seq": 5})
    assert isinstance(event, StreamEvent) and event.event_id == 7 and event.terminal


def test_an_active_order_keeps_fields_it_does_not_know() -> None:
    order = ActiveOrder.model_validate(
        {
            "orderId": "o",
            "tokenIn": "SOL",
            "tokenOut": "USDC",
            "amount": 1.5,
            "orderType": "MARKET",
            "status": "confirmed",
            "submittedAt": 1.0,
            "exchangeId": "METEORA",
            "routingDecision": DECISION,
            "somethingNew": 42,
        }
    )
    assert order.terminal and order.exchange_id == "METEORA"
    assert order.model_extra == {"somethingNew": 42}


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (400, {"error": "Validation failed"}, BadRequest),
        (401, {"error": "Unauthorized"}, Unauthorized),
        (404, {"error": "Not found"}, NotFound),
        (409, {"error": "Conflict"}, Conflict),
        (422, {"error": "Idempotency key reused"}, Conflict),
        (422, {"error": "Risk check failed", "details": [{"code": "max_notional", "message": "too big"}]}, RiskDenied),
        (429, {"error": "Too many requests"}, TooManyRequests),
        (503, {"error": "Trading halted", "message": "maintenance"}, TradingHalted),
    ],
)
def test_each_error_answer_has_its_exception(status: int, body: dict[str, Any], kind: type[Exception]) -> None:
    error = error_for(status, body, {"retry-after": "2"})
    assert type(error) is kind
    assert error.status == status and error.error == body["error"] and error.retry_after_s == 2.0


async def test_requests_carry_the_key_and_the_body_and_errors_carry_the_server_body() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/orders/execute":
            return httpx.Response(202, json={"orderId": "order_1796000000000_0000abcd", "status": "pending", "message": "ok"})
        return httpx.Response(404, json={"error": "Not found", "message": "order not found"})

    async with AsyncClient("http://engine", api_key="oee_k_s", transport=httpx.MockTransport(answer)) as client:
        accepted = await client.submit("SOL", "USDC", 1.5, "LIMIT", limit_price=160.0, idempotency_key="k1")
        with pytest.raises(NotFound) as info:
            await client.get("order_1796000000000_ffffffff")
    assert accepted.order_id == "order_1796000000000_0000abcd"
    assert json.loads(seen[0].content) == {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 1.5, "orderType": "LIMIT", "limitPrice": 160.0}
    assert seen[0].headers["authorization"] == "Bearer oee_k_s" and seen[0].headers["idempotency-key"] == "k1"
    assert info.value.message == "order not found"
