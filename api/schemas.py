"""Request and response bodies of the HTTP API, split by direction. They are the OpenAPI contract:
every route declares its response model and its error answers (:data:`ERRORS`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from engine.models import OrderStatus, RoutingDecision, TokenName


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


class OrderView(_Camel):
    """An order's current state (times are ISO 8601 UTC with milliseconds)."""

    order_id: str
    token_in: str
    token_out: str
    amount: float
    order_type: str
    status: OrderStatus
    submitted_at: str
    executed_at: str | None = None
    failed_at: str | None = None
    failure_reason: str | None = None
    attempts: int
    routing_decision: RoutingDecision | None = None
    tx_hash: str | None = None
    tx_hashes: list[str] | None = None
    execution_price: float | None = None
    execution_amount: float | None = None
    slippage_bps: int
    limit_price: float | None = None
    max_price: float | None = None
    expires_at: str | None = None
    cancelled_at: str | None = None
    expired_at: str | None = None


class OrderPage(_Camel):
    orders: list[OrderView]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page")


class Health(BaseModel):
    status: str = Field(examples=["ok", "degraded"])
    timestamp: str
    checks: dict[str, str]
    failing: list[str] | None = None


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
    422: "Idempotency-Key reused with a different body",
    503: "PostgreSQL or Redis unavailable: nothing was accepted",
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
