"""engine.wire: the seed system's shapes (quote, routing decision, status update, ActiveOrder), checked
field by field and against the OpenAPI response schemas (api/schemas.py)."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from api.schemas import ActiveOrder
from api.schemas import DexQuote as DexQuoteSchema
from api.schemas import RoutingDecision as RoutingDecisionSchema
from engine import wire
from engine.models import DexQuote, Order, OrderEvent, OrderStatus, OrderType, RouteLeg, RoutingDecision

S = OrderStatus
NOW_MS = 1_764_000_000_000.0
OID = "order_1764000000000_0000abcd"


def dex_quote(venue: str, amount_out: float = 300.0, quoted_at: float = NOW_MS + 200.4) -> DexQuote:
    return DexQuote(
        venue=venue,
        token_in="SOL",
        token_out="USDC",
        amount_in=2.0,
        amount_out=amount_out,
        price=amount_out / 2.0,
        spot_price=151.0,
        fee_bps=25.0,
        price_impact_pct=0.2,
        liquidity=1e6,
        quoted_at=quoted_at,
    )


def single(decided_at: float | None = NOW_MS + 210.6) -> RoutingDecision:
    return RoutingDecision(
        venue="meteora",
        reason="meteora gives 300 USDC vs raydium 299 (+0.334% net of fees)",
        quotes=[dex_quote("meteora", 300.0), dex_quote("raydium", 299.0, quoted_at=NOW_MS + 201.0)],
        legs=[RouteLeg(venue="meteora", amount_in=2.0, amount_out=300.0, percent=100.0)],
        amount_out=300.0,
        price_impact_pct=0.2,
        min_amount_out=298.5,
        decided_at=decided_at,
    )


def split() -> RoutingDecision:
    return RoutingDecision(
        venue="raydium",
        reason="split 60.0% raydium / 40.0% meteora gives 301.6 USDC vs 300 on raydium alone (+0.533%)",
        quotes=[dex_quote("meteora", 299.0), dex_quote("raydium", 300.0)],
        rejected={},
        legs=[
            RouteLeg(venue="raydium", amount_in=1.2, amount_out=180.0, percent=60.0),
            RouteLeg(venue="meteora", amount_in=0.8, amount_out=121.6, percent=40.0),
        ],
        amount_out=301.6,
        price_impact_pct=0.15,
        min_amount_out=300.0,
        decided_at=NOW_MS + 220.0,
    )


def event(seq: int, status: OrderStatus, at: float = NOW_MS, **fields: Any) -> OrderEvent:
    return OrderEvent(order_id=OID, seq=seq, status=status, at=at, **fields)


def order(**changes: Any) -> Order:
    base = Order(
        order_id=OID,
        token_in="SOL",
        token_out="USDC",
        amount=2.0,
        order_type=OrderType.MARKET,
        status=S.PENDING,
        submitted_at=NOW_MS + 0.4,
    )
    return base.model_copy(update=changes)


def conforms(body: dict[str, Any], model: type[Any]) -> None:
    """``body`` is valid under the model's JSON schema: the one /openapi.json publishes."""
    jsonschema.Draft202012Validator(model.model_json_schema(by_alias=True)).validate(body)


# --------------------------------------------------------------------------- quote


def test_quote_has_the_seed_fields_and_its_price_impact() -> None:
    q = dex_quote("raydium")
    body = wire.quote(q)
    assert body == {
        "dex": "RAYDIUM",
        "price": 151.0,  # the pool's price before fees
        "fee": 2.0 * 25.0 / 10_000,  # an amount of tokenIn
        "netPrice": 150.0,  # amountOut / amountIn, after fees
        "amountOut": 300.0,
        "liquidity": 1e6,
        "priceImpactPct": 0.2,
    }
    assert body["netPrice"] == body["amountOut"] / q.amount_in
    conforms(body, DexQuoteSchema)


# --------------------------------------------------------------------------- routing decision


def test_routing_decision_names_the_selected_dex_and_a_quote_per_venue() -> None:
    body = wire.routing_decision(single())
    assert body == {
        "selectedDex": "METEORA",
        "meteoraQuote": wire.quote(dex_quote("meteora", 300.0)),
        "raydiumQuote": wire.quote(dex_quote("raydium", 299.0, quoted_at=NOW_MS + 201.0)),
        "selectionReason": "meteora gives 300 USDC vs raydium 299 (+0.334% net of fees)",
        "routingTimestamp": 1_764_000_000_211,
        "legs": [{"dex": "METEORA", "amountIn": 2.0, "amountOut": 300.0, "percent": 100.0}],
        "rejected": {},
        "priceImpactPct": 0.2,
        "amountOut": 300.0,
        "minAmountOut": 298.5,
    }
    assert isinstance(body["routingTimestamp"], int)
    conforms(body, RoutingDecisionSchema)


def test_a_split_route_names_the_larger_leg_and_keeps_both_legs() -> None:
    body = wire.routing_decision(split())
    assert body["selectedDex"] == "RAYDIUM"
    assert body["legs"] == [
        {"dex": "RAYDIUM", "amountIn": 1.2, "amountOut": 180.0, "percent": 60.0},
        {"dex": "METEORA", "amountIn": 0.8, "amountOut": 121.6, "percent": 40.0},
    ]
    assert body["amountOut"] == 301.6 and body["minAmountOut"] == 300.0
    assert {"raydiumQuote", "meteoraQuote"} <= set(body)
    conforms(body, RoutingDecisionSchema)


def test_a_third_venue_gets_its_own_quote_key_and_rejections_are_by_dex() -> None:
    decision = single().model_copy(
        update={"quotes": [*single().quotes, dex_quote("toy", 310.0)], "rejected": {"orca": "no pool for SOL/USDC"}}
    )
    body = wire.routing_decision(decision)
    assert body["toyQuote"]["dex"] == "TOY" and body["toyQuote"]["amountOut"] == 310.0
    assert body["rejected"] == {"ORCA": "no pool for SOL/USDC"}
    conforms(body, RoutingDecisionSchema)
    with pytest.raises(jsonschema.ValidationError):  # the schema allows another venue's quote, not any key
        conforms({**body, "venue": "meteora"}, RoutingDecisionSchema)


def test_a_venue_that_did_not_quote_has_no_quote_key() -> None:
    decision = single().model_copy(update={"quotes": single().quotes[:1], "rejected": {"raydium": "timeout"}})
    body = wire.routing_decision(decision)
    assert "raydiumQuote" not in body and body["rejected"] == {"RAYDIUM": "timeout"}
    conforms(body, RoutingDecisionSchema)


def test_an_old_decision_without_decided_at_loads_and_renders_a_time() -> None:
    stored = single(decided_at=None).model_dump(mode="json", by_alias=True, exclude_none=True)
    assert "decidedAt" not in stored  # as rows written before the field existed
    old = RoutingDecision.model_validate(stored)
    assert old.decided_at is None
    assert wire.routing_decision(old, NOW_MS + 300.2)["routingTimestamp"] == 1_764_000_000_300  # the carrying event's time
    assert wire.routing_decision(old)["routingTimestamp"] == 1_764_000_000_201  # else its latest quote's (raydium, at +201 ms)


# --------------------------------------------------------------------------- status updates


def test_pending_and_routing_updates() -> None:
    assert wire.status_message(event(1, S.PENDING, NOW_MS + 0.6)) == {
        "type": "status",
        "orderId": OID,
        "status": "pending",
        "timestamp": 1_764_000_000_001,
        "message": "Order accepted",
        "seq": 1,
    }
    first = wire.status_message(event(2, S.ROUTING, attempt=1))
    assert first == {
        "type": "status",
        "orderId": OID,
        "status": "routing",
        "timestamp": 1_764_000_000_000,
        "message": "Fetching quotes from DEXs",
        "seq": 2,
        "attempt": 1,
    }
    retry = wire.status_message(event(3, S.ROUTING, attempt=2, error="meteora: timeout"))
    assert retry["message"] == "Fetching quotes from DEXs (attempt 2; previous attempt: meteora: timeout)"
    assert "error" not in retry and "data" not in retry and retry["attempt"] == 2


def test_building_submitted_and_confirmed_carry_the_routing_decision() -> None:
    d = single()
    building = wire.status_message(event(3, S.BUILDING, routing_decision=d))
    submitted = wire.status_message(event(4, S.SUBMITTED, NOW_MS + 15, routing_decision=d))
    confirmed = wire.status_message(
        event(
            5,
            S.CONFIRMED,
            NOW_MS + 2_500,
            routing_decision=d,
            tx_hash="5abc",
            tx_hashes=["5abc"],
            execution_price=149.98,
            execution_amount=299.96,
        )
    )
    assert building["message"] == f"Routing to METEORA: {d.reason}"
    assert building["data"] == {"routingDecision": wire.routing_decision(d)}
    assert submitted["message"] == "Transaction submitted to METEORA"
    assert submitted["data"] == {"routingDecision": wire.routing_decision(d)}
    assert confirmed["message"] == "Order executed: 299.96 USDC at 149.98"
    assert confirmed["data"] == {
        "routingDecision": wire.routing_decision(d),
        "txHash": "5abc",
        "txHashes": ["5abc"],
        "executionPrice": 149.98,
        "executionAmount": 299.96,
    }
    assert confirmed["timestamp"] == 1_764_000_002_500 and confirmed["seq"] == 5
    for message in (building, submitted, confirmed):
        assert set(message) == {"type", "orderId", "status", "timestamp", "message", "data", "seq"}


def test_a_split_submission_names_both_venues() -> None:
    message = wire.status_message(event(4, S.SUBMITTED, routing_decision=split()))
    assert message["message"] == "Transactions submitted to RAYDIUM and METEORA"
    assert message["data"]["routingDecision"]["legs"][1]["dex"] == "METEORA"


def test_updates_without_a_decision_still_read() -> None:
    assert wire.status_message(event(3, S.BUILDING))["message"] == "Building transaction"
    assert wire.status_message(event(4, S.SUBMITTED))["message"] == "Transaction submitted"
    confirmed = wire.status_message(event(5, S.CONFIRMED, tx_hash="a", execution_price=1.5, execution_amount=3.0))
    assert confirmed["message"] == "Order executed: 3 out at 1.5"


@pytest.mark.parametrize(
    ("amount", "price", "text"),
    [
        (4_481_499.129788257, 149.38330432627524, "Order executed: 4481499 USDC at 149.383"),
        (229.9599976656689, 153.30666511044595, "Order executed: 229.96 USDC at 153.307"),
        (0.000123456789, 1.234567e-7, "Order executed: 0.000123457 USDC at 0.000000123457"),
    ],
)
def test_the_executed_text_has_six_significant_digits_and_no_exponent(amount: float, price: float, text: str) -> None:
    confirmed = event(5, S.CONFIRMED, routing_decision=single(), tx_hash="a", execution_price=price, execution_amount=amount)
    assert wire.status_message(confirmed)["message"] == text


def test_an_old_building_event_renders_its_own_time_as_the_routing_time() -> None:
    message = wire.status_message(event(3, S.BUILDING, NOW_MS + 250.0, routing_decision=single(decided_at=None)))
    assert message["data"]["routingDecision"]["routingTimestamp"] == 1_764_000_000_250


@pytest.mark.parametrize(
    ("status", "fields", "message", "data"),
    [
        (S.FAILED, {"failure_reason": "no usable quote (after 3 attempts)"}, "no usable quote (after 3 attempts)", {"failureReason"}),
        (S.FAILED, {"failure_reason": "x; partial fill: raydium 1.2 SOL", "tx_hashes": ["a"]}, "x; partial fill: raydium 1.2 SOL", None),
        (S.WAITING, {"reason": "waiting for USDC/SOL net price >= 160"}, "waiting for USDC/SOL net price >= 160", None),
        (S.CANCELLED, {"reason": "cancelled by the client"}, "cancelled by the client", None),
        (S.EXPIRED, {"reason": "expired before its condition was met"}, "expired before its condition was met", None),
        (S.EXPIRED, {}, "Order expired", None),
    ],
)
def test_failed_waiting_cancelled_expired_say_why(status: OrderStatus, fields: dict[str, Any], message: str, data: set[str] | None) -> None:
    body = wire.status_message(event(3, status, **fields))
    assert body["message"] == message
    assert "reason" not in body and "failureReason" not in body
    if status is S.FAILED:
        assert body["data"]["failureReason"] == fields["failure_reason"]
        assert body["data"].get("txHashes") == fields.get("tx_hashes")
    else:
        assert "data" not in body


# --------------------------------------------------------------------------- ActiveOrder


def test_a_pending_order_has_the_seed_fields_with_epoch_ms_times() -> None:
    body = wire.active_order(order())
    assert body == {
        "orderId": OID,
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amount": 2.0,
        "orderType": "MARKET",
        "status": "pending",
        "submittedAt": 1_764_000_000_000,
        "attempts": 0,
        "slippageBps": 50,
    }
    conforms(body, ActiveOrder)


def test_a_confirmed_order_has_every_seed_field() -> None:
    d = single()
    confirmed = order().apply(event(2, S.ROUTING, attempt=1)).apply(event(3, S.BUILDING, routing_decision=d))
    confirmed = confirmed.apply(
        event(5, S.CONFIRMED, NOW_MS + 2_500.7, tx_hash="5abc", tx_hashes=["5abc"], execution_price=149.98, execution_amount=299.96)
    )
    body = wire.active_order(confirmed)
    assert body == {
        "orderId": OID,
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amount": 2.0,
        "orderType": "MARKET",
        "status": "confirmed",
        "submittedAt": 1_764_000_000_000,
        "executedAt": 1_764_000_002_501,
        "exchangeId": "METEORA",
        "executionPrice": 149.98,
        "executionAmount": 299.96,
        "routingDecision": wire.routing_decision(d),
        "txHash": "5abc",
        "attempts": 1,
        "slippageBps": 50,
        "txHashes": ["5abc"],
    }
    conforms(body, ActiveOrder)


def test_failed_cancelled_and_expired_orders_and_the_order_terms() -> None:
    failed = wire.active_order(order().apply(event(2, S.FAILED, NOW_MS + 900, failure_reason="no route")))
    assert (failed["failedAt"], failed["failureReason"]) == (1_764_000_000_900, "no route")
    assert "executedAt" not in failed and "exchangeId" not in failed
    limit = order(order_type=OrderType.LIMIT, limit_price=160.0, expires_at=NOW_MS + 60_000, slippage_bps=75)
    cancelled = wire.active_order(limit.apply(event(2, S.CANCELLED, NOW_MS + 500, reason="cancelled by the client")))
    assert cancelled["cancelledAt"] == 1_764_000_000_500
    assert (cancelled["orderType"], cancelled["limitPrice"], cancelled["expiresAt"], cancelled["slippageBps"]) == (
        "LIMIT",
        160.0,
        1_764_000_060_000,
        75,
    )
    sniper = order(order_type=OrderType.SNIPER, max_price=0.01).apply(event(2, S.EXPIRED, NOW_MS + 1_000, reason="expired"))
    expired = wire.active_order(sniper)
    assert (expired["expiredAt"], expired["maxPrice"]) == (1_764_000_001_000, 0.01)
    for body in (failed, cancelled, expired):
        conforms(body, ActiveOrder)


def test_internal_flags_stay_out_and_drift_is_caught() -> None:
    body = wire.active_order(order(cancel_requested=True, triggered_at=NOW_MS))
    assert "cancelRequested" not in body and "triggeredAt" not in body
    with pytest.raises(jsonschema.ValidationError):
        conforms({**body, "submittedAt": "2025-11-24T16:00:00.000Z"}, ActiveOrder)  # the old ISO time
    with pytest.raises(jsonschema.ValidationError):
        conforms({**body, "ts": NOW_MS}, ActiveOrder)  # a field the schema does not have


def test_an_old_order_row_without_decided_at_renders_its_latest_quote_time() -> None:
    old = order(status=S.BUILDING, routing_decision=single(decided_at=None))
    body = wire.active_order(old)
    assert body["routingDecision"]["routingTimestamp"] == 1_764_000_000_201
    assert body["exchangeId"] == "METEORA"
    conforms(body, ActiveOrder)
