"""The engine's wire shapes as typed models (the seed system's contract and what the engine adds).

Unknown fields are kept (``model_extra``), so a newer engine's additions do not break this client.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

TERMINAL = frozenset({"confirmed", "failed", "cancelled", "expired"})


class WireModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class DexQuote(WireModel):
    dex: str
    price: float = Field(description="Pool price before fees (tokenOut per tokenIn)")
    fee: float = Field(description="Fee, in tokenIn")
    net_price: float = Field(description="amountOut / amountIn, after fees")
    amount_out: float
    liquidity: float | None = None
    price_impact_pct: float | None = None


class RouteLeg(WireModel):
    dex: str
    amount_in: float
    amount_out: float
    percent: float


class RoutingDecision(WireModel):
    selected_dex: str
    selection_reason: str
    routing_timestamp: float | None = None
    legs: list[RouteLeg] = Field(default_factory=list)
    rejected: dict[str, str] = Field(default_factory=dict)
    price_impact_pct: float | None = None
    amount_out: float | None = None
    min_amount_out: float | None = None

    @property
    def quotes(self) -> dict[str, DexQuote]:
        """Every venue's quote, by dex (the wire names them ``raydiumQuote``, ``meteoraQuote``, ...)."""
        found: dict[str, DexQuote] = {}
        for key, value in (self.model_extra or {}).items():
            if key.endswith("Quote") and isinstance(value, dict):
                quote = DexQuote.model_validate(value)
                found[quote.dex] = quote
        return found


class StatusData(WireModel):
    routing_decision: RoutingDecision | None = None
    tx_hash: str | None = None
    tx_hashes: list[str] | None = None
    failure_reason: str | None = None
    execution_price: float | None = None
    execution_amount: float | None = None


class StatusUpdate(WireModel):
    """One status message of an order's stream."""

    order_id: str
    status: str
    timestamp: float = Field(description="Epoch milliseconds")
    message: str = ""
    data: StatusData = Field(default_factory=StatusData)
    seq: int = 0
    attempt: int | None = None
    correction: bool = False

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class StreamEvent(StatusUpdate):
    """One event of the account-wide stream: a status message with its global ``eventId``."""

    event_id: int


class OrderAccepted(WireModel):
    order_id: str
    status: str
    message: str = ""


class ActiveOrder(WireModel):
    """An order's current state (``GET /api/orders/{id}``); times are epoch milliseconds."""

    order_id: str
    token_in: str
    token_out: str
    amount: float
    order_type: str
    status: str
    submitted_at: float
    executed_at: float | None = None
    failed_at: float | None = None
    failure_reason: str | None = None
    exchange_id: str | None = None
    execution_price: float | None = None
    execution_amount: float | None = None
    routing_decision: RoutingDecision | None = None
    tx_hash: str | None = None
    tx_hashes: list[str] | None = None
    attempts: int = 0
    slippage_bps: int | None = None
    limit_price: float | None = None
    max_price: float | None = None
    expires_at: float | None = None
    cancelled_at: float | None = None
    expired_at: float | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class OrderPage(WireModel):
    orders: list[ActiveOrder]
    next_cursor: str | None = None


def as_update(message: dict[str, Any]) -> StatusUpdate | None:
    """A stream message as a :class:`StatusUpdate`, or None for connected/pong/other messages."""
    if message.get("type") not in ("status", "event") or "status" not in message:
        return None
    return StreamEvent.model_validate(message) if "eventId" in message else StatusUpdate.model_validate(message)
