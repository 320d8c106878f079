"""Request and response bodies of the HTTP API, split by direction. They are the OpenAPI contract:
every route declares its response model and its error answers (:data:`ERRORS`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema

from engine.models import OrderStatus, TokenName


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


# --------------------------------------------------------------------------- requests


class SimPoolIn(_Camel):
    """A pool to list (simulation admin). Tokens are symbols or base58 mints; reserves in human units."""

    venue: str = Field(min_length=1, max_length=64, description="A configured venue's name (raydium, meteora)")
    base: TokenName
    quote: TokenName
    reserve_base: float = Field(gt=0, le=1e15, allow_inf_nan=False)
    reserve_quote: float = Field(gt=0, le=1e15, allow_inf_nan=False)


class SimPriceMoveIn(_Camel):
    venue: str = Field(min_length=1, max_length=64, description="A configured venue's name (raydium, meteora)")
    base: TokenName
    quote: TokenName
    percent: float = Field(gt=-99, lt=1000, allow_inf_nan=False)


# --------------------------------------------------------------------------- responses


class ErrorDetail(BaseModel):
    path: list[str | int]
    message: str
    code: str


class ErrorBody(BaseModel):
    error: str
    message: str | None = None
    details: list[ErrorDetail] | None = None


class OrderAccepted(BaseModel):
    orderId: str = Field(examples=["order_1764032400000_1a2b3c4d"])
    status: str = Field(examples=["pending"])
    message: str


class CancelPending(BaseModel):
    """The cancel was recorded but the order had not closed within the wait: follow its stream."""

    orderId: str
    status: str = Field(examples=["cancelling"])
    message: str


class _Out(_Camel):
    """A response body with exactly these fields (the OpenAPI schema forbids others, so drift shows)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class DexQuote(_Out):
    """A venue's quote: the seed's DexQuote, and its price impact."""

    dex: str = Field(examples=["RAYDIUM"], description="The venue, upper case")
    price: float = Field(description="The pool's price before fees and this trade: tokenOut per tokenIn")
    fee: float = Field(description="The pool's fee on this order, an amount of tokenIn")
    net_price: float = Field(description="amountOut / amountIn, after fees")
    amount_out: float
    liquidity: float = Field(description="Depth on the output side of the pool, in tokenOut")
    price_impact_pct: float


class RouteLeg(_Out):
    """One venue's share of the order (a single-venue route has one leg of 100 %)."""

    dex: str
    amount_in: float
    amount_out: float
    percent: float


def _other_venues(schema: dict[str, Any]) -> None:
    """Every venue that quoted has a ``<venue>Quote`` key (a configured third venue ``toy``: ``toyQuote``)."""
    quote = {key: value for key, value in schema["properties"]["raydiumQuote"].items() if key != "title"}
    schema["patternProperties"] = {"^.+Quote$": quote | {"description": "Another venue's quote"}}


class RoutingDecision(_Out):
    """The seed's RoutingDecision (a quote per venue that quoted), and the route beside it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", json_schema_extra=_other_venues)

    selected_dex: str = Field(examples=["METEORA"], description="The venue of the largest leg")
    raydium_quote: DexQuote | SkipJsonSchema[None] = None
    meteora_quote: DexQuote | SkipJsonSchema[None] = None
    selection_reason: str
    routing_timestamp: int = Field(description="Epoch ms the decision was made")
    legs: list[RouteLeg] = Field(description="One leg, or two for a split route")
    rejected: dict[str, str] = Field(description="Venue -> why it gave no usable quote")
    price_impact_pct: float = Field(description="The whole route's")
    amount_out: float = Field(description="The whole route's")
    min_amount_out: float = Field(description="The least the swap may give: after slippage, and at least the order's floor")


class ActiveOrder(_Out):
    """An order's current state: the seed's ActiveOrder (times in epoch ms), and what it lacks."""

    order_id: str
    token_in: str
    token_out: str
    amount: float
    order_type: str
    status: OrderStatus
    submitted_at: int
    executed_at: int | SkipJsonSchema[None] = None
    failed_at: int | SkipJsonSchema[None] = None
    failure_reason: str | SkipJsonSchema[None] = None
    exchange_id: str | SkipJsonSchema[None] = Field(default=None, description="The selected dex, once routed")
    execution_price: float | SkipJsonSchema[None] = Field(default=None, description="tokenOut per tokenIn, as the swap landed")
    execution_amount: float | SkipJsonSchema[None] = Field(default=None, description="tokenOut received")
    routing_decision: RoutingDecision | SkipJsonSchema[None] = None
    tx_hash: str | SkipJsonSchema[None] = None
    attempts: int
    slippage_bps: int
    tx_hashes: list[str] | SkipJsonSchema[None] = Field(
        default=None, description="The order's transactions (one on a chain: a split's legs land together)"
    )
    limit_price: float | SkipJsonSchema[None] = None
    max_price: float | SkipJsonSchema[None] = None
    expires_at: int | SkipJsonSchema[None] = None
    cancelled_at: int | SkipJsonSchema[None] = None
    expired_at: int | SkipJsonSchema[None] = None


class OrderPage(_Out):
    orders: list[ActiveOrder]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page")


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: str = Field(examples=["ok", "degraded"])
    timestamp: int = Field(description="Epoch ms")
    checks: dict[str, str]
    dispatcher: Literal["active", "standby", "unknown"] = Field(
        default="unknown", description="Whether this engine's dispatcher holds the dispatch lease of its stores (else it stands by)"
    )
    failing: list[str] | SkipJsonSchema[None] = None


class SimPoolListed(_Camel):
    venue: str
    pair: str
    listed_at: float


class SimPriceMoved(_Camel):
    venue: str
    pair: str
    spot_price: float


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entry for these error statuses (their body is :class:`ErrorBody`)."""
    return {status: {"model": ErrorBody, "description": ERRORS[status]} for status in statuses}


ERRORS: dict[int, str] = {
    400: "Validation failed, invalid JSON or unsupported pair",
    404: "No such order (or the route is disabled)",
    409: "The order can no longer be cancelled",
    413: "Body larger than the limit",
    415: "Body is not JSON",
    422: (
        "Idempotency-Key reused with a different body, a risk check failed (details: max_notional, max_depth_share, "
        "max_open_notional), or the wallet cannot pay the order (Insufficient funds)"
    ),
    429: "Over the account's rate or open-order cap (Retry-After, RateLimit-*)",
    503: "Trading halted, the queue full (Retry-After), or PostgreSQL or Redis unavailable: nothing was accepted",
}


class VenuePrice(BaseModel):
    dex: str
    price: float | None = Field(default=None, description="Spot price before fees (tokenOut per tokenIn)")
    netPrice: float | None = Field(default=None, description="What the amount would get per tokenIn, after fees")
    liquidity: float | None = None
    error: str | None = Field(default=None, description="Why the venue gave no price (no pool, a fault)")


class VenuePrices(BaseModel):
    tokenIn: str
    tokenOut: str
    amount: float
    timestamp: int = Field(description="Epoch milliseconds")
    venues: list[VenuePrice]
