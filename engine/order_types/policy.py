"""What an order type decides. Every order type is one :class:`OrderTypePolicy`; the engine asks it
and never branches on a type's name."""

from __future__ import annotations

from typing import Any, ClassVar

from engine.bands import Band
from engine.lifecycle import NOT_STARTED
from engine.models import Order, OrderRequest
from engine.watch import Watch


class OrderTypePolicy:
    """The contract of an order type. Subclass it, set :attr:`name`, override what differs, register it.

    The defaults describe an order that executes at once at the market (MARKET).
    """

    name: str
    """The ``orderType`` clients send (upper case by convention)."""
    waits: bool = False
    """True if the order waits (in the PriceWatcher) until :meth:`fires` before it executes."""
    needs_listed_pair: bool = True
    """False if the order may name a pair no venue trades yet (it waits for the listing)."""
    problem_fields: ClassVar[dict[str, str]] = {}
    """The request field each of :meth:`check`'s error codes is about (reported at that field)."""

    def check(self, request: OrderRequest) -> None:
        """Refuse a request that lacks what this type needs: raise ``PydanticCustomError`` whose code
        names the problem (and :attr:`problem_fields` the field)."""

    def terms(self, request: OrderRequest) -> dict[str, Any]:
        """The type's own fields of a new order (``limit_price``, ``max_price``): the rest are dropped."""
        return {}

    def floor(self, order: Order) -> float:
        """The least output the order accepts whatever the slippage (its limit); 0 for none."""
        return 0.0

    def fires(self, watch: Watch, best_output: float) -> bool:
        """For a waiting order: does the best output for its amount now meet its condition?"""
        return True

    def waiting_reason(self, order: Order) -> str:
        """What a waiting order waits for, in words (shown in its ``waiting`` event)."""
        return "waiting for its condition"

    def default_expiry(self, submitted_ms: float, max_age_s: float | None) -> float | None:
        """When an order of this type expires if it has not started: an order that executes at once
        (it does not wait) is worth executing only near the price it was sent at, so it gets a maximum
        age (``OEE_MARKET_MAX_AGE_S``); one that waits lives until its own ``expiresAt``."""
        if self.waits or max_age_s is None:
            return None
        return submitted_ms + max_age_s * 1000.0

    def band(self, order: Order) -> Band:
        """The queue band of a run of this order (a cancel request goes to CONTROL before this is asked)."""
        if not self.waits:
            return Band.MARKET
        if order.triggered_at is None and order.status in NOT_STARTED:
            return Band.ARM
        return Band.TRIGGERED
