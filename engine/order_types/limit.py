"""LIMIT: wait until the net price for the whole amount reaches ``limitPrice``, then execute no worse."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic_core import PydanticCustomError

from engine.models import Order, OrderRequest, OrderType
from engine.order_types.policy import OrderTypePolicy
from engine.watch import Watch


class Limit(OrderTypePolicy):
    name = OrderType.LIMIT
    waits = True
    problem_fields: ClassVar[dict[str, str]] = {"limit_price_required": "limitPrice"}

    def check(self, request: OrderRequest) -> None:
        if request.limit_price is None:
            raise PydanticCustomError("limit_price_required", "LIMIT orders need limitPrice (minimum tokenOut per tokenIn)")

    def terms(self, request: OrderRequest) -> dict[str, Any]:
        return {"limit_price": request.limit_price}

    def floor(self, order: Order) -> float:
        return order.limit_price * order.amount if order.limit_price is not None else 0.0

    def fires(self, watch: Watch, best_output: float) -> bool:
        return watch.limit_price is not None and best_output / watch.amount >= watch.limit_price

    def waiting_reason(self, order: Order) -> str:
        return f"waiting for {order.token_out}/{order.token_in} net price >= {order.limit_price:g}"
