"""Domain models. Their JSON (request bodies, the stores' copies) is camelCase; Python attributes are
snake_case. What clients receive is rendered from them by :mod:`engine.wire`.

Amounts are floats in human units of the token (1.5 SOL, not lamports): the
venues are simulated, and the pool math is done in floating point.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from engine.accounts import LOCAL_ACCOUNT
from engine.tokens import canonical_token

MAX_AMOUNT = 1e12
"""Larger amounts are refused at intake: more than any pool on any pair could fill."""


class OrderStatus(StrEnum):
    PENDING = "pending"
    WAITING = "waiting"
    ROUTING = "routing"
    BUILDING = "building"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class OrderType(StrEnum):
    """The built-in order types. The registry (:mod:`engine.order_types`) may hold more: an order's
    ``order_type`` is any registered name (intake makes it these members for the built-in ones)."""

    MARKET = "MARKET"
    LIMIT = "LIMIT"
    SNIPER = "SNIPER"


VenueName = str
"""A venue's registered name (``raydium``). Which venues exist is the registry's business (:mod:`venues.registry`)."""


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _as_token(value: str) -> str:
    token = canonical_token(value)
    if token is None:
        raise PydanticCustomError(
            "unknown_token",
            "must be a listed token symbol (SOL, USDC, USDT, BONK, JUP, RAY, WIF, MSOL) or a base58 mint address",
        )
    return token


OrderTypeName = Annotated[str, Field(strict=True, min_length=1, max_length=32)]
"""An order type's name; which names exist is the registry's business (:mod:`engine.order_types`), which
intake asks (:func:`engine.intake.parse_order`)."""

TokenName = Annotated[str, Field(strict=True, min_length=1, max_length=64), AfterValidator(_as_token)]
"""A token as clients name it (symbol, any case, or mint), validated and made canonical."""


class OrderRequest(BaseModel):
    """The body of ``POST /api/orders/execute``. Unknown fields are ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    token_in: TokenName = Field(description="Symbol (SOL, USDC...) or base58 mint")
    token_out: TokenName = Field(description="Symbol (SOL, USDC...) or base58 mint")
    amount: float = Field(strict=True, gt=0, le=MAX_AMOUNT, allow_inf_nan=False, description="Amount of tokenIn")
    order_type: OrderTypeName = Field(description="A registered order type: MARKET now; LIMIT at limitPrice; SNIPER on listing")
    slippage_bps: int = Field(default=50, strict=True, ge=0, le=5000, description="Tolerated slippage from the quote, in basis points")
    limit_price: float | None = Field(
        default=None, strict=True, gt=0, le=MAX_AMOUNT, allow_inf_nan=False, description="LIMIT: minimum tokenOut per tokenIn, net of fees"
    )
    max_price: float | None = Field(
        default=None, strict=True, gt=0, le=MAX_AMOUNT, allow_inf_nan=False, description="SNIPER: maximum tokenIn paid per tokenOut"
    )
    expires_at: int | None = Field(default=None, strict=True, gt=0, lt=10**15, description="Epoch ms; default good till cancelled")

    @model_validator(mode="after")
    def _distinct_tokens(self) -> OrderRequest:
        if self.token_in == self.token_out:
            raise PydanticCustomError("same_token", "tokenIn and tokenOut must differ")
        return self


class DexQuote(CamelModel):
    """What a venue would give for ``amount_in`` of ``token_in`` right now."""

    venue: VenueName
    token_in: str
    token_out: str
    amount_in: float
    amount_out: float
    price: float = Field(description="Net price: amountOut / amountIn, after the pool fee")
    spot_price: float = Field(description="Mid price before this trade (tokenOut per tokenIn)")
    fee_bps: float
    price_impact_pct: float
    liquidity: float = Field(description="Depth on the output side of the pool, in tokenOut")
    quoted_at: float = Field(description="Epoch ms")


class RouteLeg(CamelModel):
    """One venue's share of an order (a single-venue route has one leg of 100%)."""

    venue: VenueName
    amount_in: float
    amount_out: float
    percent: float


class RoutingDecision(CamelModel):
    venue: VenueName = Field(description="The venue of the largest leg")
    reason: str
    quotes: list[DexQuote]
    rejected: dict[str, str] = Field(default_factory=dict, description="Venue -> why it gave no usable quote")
    legs: list[RouteLeg] = Field(default_factory=list)
    amount_out: float = 0.0
    price_impact_pct: float = 0.0
    min_amount_out: float = Field(default=0.0, description="The least the swap may give: after slippage, and the limit if any")
    decided_at: float | None = Field(
        default=None, description="Epoch ms the decision was made (None in decisions stored before it was kept)"
    )


class SwapResult(CamelModel):
    venue: VenueName
    order_id: str
    tx_hash: str
    amount_in: float
    amount_out: float
    execution_price: float
    executed_at: float = Field(description="Epoch ms")
    sent_at: float | None = Field(
        default=None,
        description="Epoch ms the venue received the swap: executed_at - sent_at is the time spent at the venue",
    )


class OrderEvent(CamelModel):
    """One transition of one order, as kept in the audit trail (streamed as :func:`engine.wire.status_message`)."""

    order_id: str
    seq: int
    status: OrderStatus
    at: float = Field(description="Epoch ms")
    attempt: int | None = None
    routing_decision: RoutingDecision | None = None
    tx_hash: str | None = None
    execution_price: float | None = None
    execution_amount: float | None = None
    failure_reason: str | None = None
    error: str | None = Field(default=None, description="Why the previous attempt failed (on a retry)")
    tx_hashes: list[str] | None = None
    reason: str | None = Field(default=None, description="Why the order waits, was cancelled or expired")


class Order(CamelModel):
    """An order's current state (``GET /api/orders/{id}`` returns it as :func:`engine.wire.active_order`)."""

    order_id: str
    token_in: str
    token_out: str
    amount: float
    order_type: OrderTypeName
    status: OrderStatus
    submitted_at: float
    executed_at: float | None = None
    failed_at: float | None = None
    failure_reason: str | None = None
    attempts: int = 0
    routing_decision: RoutingDecision | None = None
    tx_hash: str | None = None
    tx_hashes: list[str] | None = None
    execution_price: float | None = None
    execution_amount: float | None = None
    slippage_bps: int = 50
    limit_price: float | None = None
    max_price: float | None = None
    expires_at: float | None = None
    cancelled_at: float | None = None
    expired_at: float | None = None
    cancel_requested: bool = Field(default=False, exclude=True)
    triggered_at: float | None = Field(default=None, exclude=True)
    account: str = Field(default=LOCAL_ACCOUNT, description="The account the order belongs to (the submitting key's)")
    notional_usd: float | None = Field(default=None, description="Its USD value at acceptance, for the account's open notional")

    def apply(self, event: OrderEvent) -> Order:
        """The order after ``event`` (a pure fold: the lifecycle check is the caller's)."""
        changes: dict[str, Any] = {"status": event.status}
        if event.attempt is not None:
            changes["attempts"] = event.attempt
        if event.routing_decision is not None:
            changes["routing_decision"] = event.routing_decision
        if event.status is OrderStatus.CONFIRMED:
            changes.update(
                executed_at=event.at,
                tx_hash=event.tx_hash,
                tx_hashes=event.tx_hashes,
                execution_price=event.execution_price,
                execution_amount=event.execution_amount,
            )
        if event.status is OrderStatus.FAILED:
            changes.update(failed_at=event.at, failure_reason=event.failure_reason, tx_hashes=event.tx_hashes or self.tx_hashes)
        if event.status is OrderStatus.CANCELLED:
            changes.update(cancelled_at=event.at)
        if event.status is OrderStatus.EXPIRED:
            changes.update(expired_at=event.at)
        return self.model_copy(update=changes)
