"""The client-facing JSON: internal models rendered in the seed system's shapes (a client written for
it works unchanged), with what the seed lacks beside them.

The seed's fields carry their facts once: a quote's fee is ``fee`` (an amount of tokenIn), not also
``feeBps``; times are epoch milliseconds (integers), not also ISO strings. Venue names are lower case
inside the engine (``raydium``) and upper case here (``RAYDIUM``). Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from typing import Any

from engine.models import DexQuote, Order, OrderEvent, OrderStatus, RoutingDecision, VenueName

S = OrderStatus

CONNECTED_MESSAGE = "Connected to order status stream"


def ms(epoch_ms: float) -> int:
    """Epoch milliseconds as the whole number clients get (``Date.now()``)."""
    return round(epoch_ms)


def dex(venue: VenueName) -> str:
    """A venue's name on the wire: ``raydium`` -> ``RAYDIUM``."""
    return venue.upper()


def quote_key(venue: VenueName) -> str:
    """The decision's key for a venue's quote: ``raydium`` -> ``raydiumQuote``."""
    return f"{venue}Quote"


def _amount(value: float) -> str:
    """Six significant digits, never in exponent form: ``4481499.13`` -> ``4481499``, ``1.234567e-07`` -> ``0.000000123457``."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, 5 - math.floor(math.log10(abs(value))))
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def quote(q: DexQuote) -> dict[str, Any]:
    """``{dex, price, fee, netPrice, amountOut, liquidity, priceImpactPct}``: ``price`` is the pool's
    spot price before fees (tokenOut per tokenIn), ``fee`` an amount of tokenIn, ``netPrice`` =
    amountOut / amountIn after fees."""
    return {
        "dex": dex(q.venue),
        "price": q.spot_price,
        "fee": q.amount_in * q.fee_bps / 10_000,
        "netPrice": q.price,
        "amountOut": q.amount_out,
        "liquidity": q.liquidity,
        "priceImpactPct": q.price_impact_pct,
    }


def routing_decision(d: RoutingDecision, fallback_ms: float | None = None) -> dict[str, Any]:
    """``{selectedDex, <venue>Quote..., selectionReason, routingTimestamp}`` and the route beside them:
    ``legs`` (two for a split), ``rejected`` (by venue), ``priceImpactPct``, ``amountOut``,
    ``minAmountOut``.

    ``routingTimestamp`` is when the decision was made; a decision stored before it was recorded
    says ``fallback_ms`` (the event that carried it), or else the time of its latest quote.
    """
    decided = d.decided_at
    if decided is None:
        decided = fallback_ms if fallback_ms is not None else max((q.quoted_at for q in d.quotes), default=0.0)
    out: dict[str, Any] = {"selectedDex": dex(d.venue)}
    for q in d.quotes:
        out[quote_key(q.venue)] = quote(q)
    out["selectionReason"] = d.reason
    out["routingTimestamp"] = ms(decided)
    out["legs"] = [
        {"dex": dex(leg.venue), "amountIn": leg.amount_in, "amountOut": leg.amount_out, "percent": leg.percent} for leg in d.legs
    ]
    out["rejected"] = {dex(venue): why for venue, why in d.rejected.items()}
    out["priceImpactPct"] = d.price_impact_pct
    out["amountOut"] = d.amount_out
    out["minAmountOut"] = d.min_amount_out
    return out


def _token_out(d: RoutingDecision | None) -> str:
    return d.quotes[0].token_out if d is not None and d.quotes else "out"


def message_text(event: OrderEvent) -> str:
    """The human text of a status update, from the event alone."""
    d = event.routing_decision
    match event.status:
        case S.PENDING:
            return "Order accepted"
        case S.ROUTING:
            notes = []
            if event.attempt is not None and (event.attempt > 1 or event.error):
                notes.append(f"attempt {event.attempt}")
            if event.error:
                notes.append(f"previous attempt: {event.error}")
            return "Fetching quotes from DEXs" + (f" ({'; '.join(notes)})" if notes else "")
        case S.BUILDING:
            return f"Routing to {dex(d.venue)}: {d.reason}" if d is not None else "Building transaction"
        case S.SUBMITTED:
            if d is None:
                return "Transaction submitted"
            venues = [dex(leg.venue) for leg in d.legs] or [dex(d.venue)]
            if len(venues) == 1:
                return f"Transaction submitted to {venues[0]}"
            return f"Transactions submitted to {' and '.join(venues)}"
        case S.CONFIRMED:
            if event.execution_amount is None or event.execution_price is None:
                return "Order executed"
            return f"Order executed: {_amount(event.execution_amount)} {_token_out(d)} at {_amount(event.execution_price)}"
        case S.FAILED:
            return event.failure_reason or "Order failed"
        case _:  # waiting, cancelled, expired: why
            return event.reason or f"Order {event.status.value}"


def status_message(event: OrderEvent) -> dict[str, Any]:
    """A WebSocket status update: ``{type, orderId, status, timestamp, message, data?, seq, attempt?}``.

    ``data`` holds ``routingDecision`` (building, submitted, confirmed, and a failure after a re-quote),
    ``txHash`` and ``txHashes`` (confirmed; the split legs' hashes), ``failureReason``,
    ``executionPrice`` and ``executionAmount``, each only when the event has it, and is left out when
    empty. The hub adds ``correction`` when an event replaced another at its seq.
    """
    data: dict[str, Any] = {}
    if event.routing_decision is not None:
        data["routingDecision"] = routing_decision(event.routing_decision, event.at)
    if event.tx_hash is not None:
        data["txHash"] = event.tx_hash
    if event.tx_hashes is not None:
        data["txHashes"] = event.tx_hashes
    if event.failure_reason is not None:
        data["failureReason"] = event.failure_reason
    if event.execution_price is not None:
        data["executionPrice"] = event.execution_price
    if event.execution_amount is not None:
        data["executionAmount"] = event.execution_amount
    out: dict[str, Any] = {
        "type": "status",
        "orderId": event.order_id,
        "status": event.status.value,
        "timestamp": ms(event.at),
        "message": message_text(event),
    }
    if data:
        out["data"] = data
    out["seq"] = event.seq
    if event.attempt is not None:
        out["attempt"] = event.attempt
    return out


def active_order(order: Order) -> dict[str, Any]:
    """An order as ``GET /api/orders/{id}`` returns it: the seed's ActiveOrder (times in epoch ms,
    ``exchangeId`` the selected dex), then what the seed lacks (``attempts``, ``txHashes``,
    ``slippageBps``, the order's own terms and its other end times)."""
    d = order.routing_decision
    optional: dict[str, Any] = {
        "executedAt": ms(order.executed_at) if order.executed_at is not None else None,
        "failedAt": ms(order.failed_at) if order.failed_at is not None else None,
        "failureReason": order.failure_reason,
        "exchangeId": dex(d.venue) if d is not None else None,
        "executionPrice": order.execution_price,
        "executionAmount": order.execution_amount,
        "routingDecision": routing_decision(d) if d is not None else None,
        "txHash": order.tx_hash,
    }
    extra: dict[str, Any] = {
        "txHashes": order.tx_hashes,
        "limitPrice": order.limit_price,
        "maxPrice": order.max_price,
        "expiresAt": ms(order.expires_at) if order.expires_at is not None else None,
        "cancelledAt": ms(order.cancelled_at) if order.cancelled_at is not None else None,
        "expiredAt": ms(order.expired_at) if order.expired_at is not None else None,
    }
    return {
        "orderId": order.order_id,
        "tokenIn": order.token_in,
        "tokenOut": order.token_out,
        "amount": order.amount,
        "orderType": str(order.order_type),
        "status": order.status.value,
        "submittedAt": ms(order.submitted_at),
        **{k: v for k, v in optional.items() if v is not None},
        "attempts": order.attempts,
        "slippageBps": order.slippage_bps,
        **{k: v for k, v in extra.items() if v is not None},
    }
