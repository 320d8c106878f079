"""MARKET: execute now at the best route, within the order's slippage."""

from __future__ import annotations

from engine.models import OrderType
from engine.order_types.policy import OrderTypePolicy


class Market(OrderTypePolicy):
    name = OrderType.MARKET
