"""SNIPER: buy the moment a pool for the pair exists, paying at most ``maxPrice`` tokenIn per tokenOut."""

from __future__ import annotations

from typing import Any

from engine.models import Order, OrderRequest, OrderType
from engine.order_types.policy import OrderTypePolicy
from engine.watch import Watch


class Sniper(OrderTypePolicy):
    name = OrderType.SNIPER
    waits = True
    needs_listed_pair = False

    def terms(self, request: OrderRequest) -> dict[str, Any]:
        return {"max_price": request.max_price}

    def floor(self, order: Order) -> float:
        return order.amount / order.max_price if order.max_price is not None else 0.0

    def fires(self, watch: Watch, best_output: float) -> bool:
        return watch.max_price is None or watch.amount / best_output <= watch.max_price

    def waiting_reason(self, order: Order) -> str:
        cap = f" at <= {order.max_price:g} {order.token_in} each" if order.max_price else ""
        return f"waiting for a pool to buy {order.token_out}{cap}"
