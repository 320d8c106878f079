"""What the watcher needs of a waiting order: its terms, apart from the rest of its state."""

from __future__ import annotations

from dataclasses import dataclass

from engine.models import Order


@dataclass(frozen=True, slots=True)
class Watch:
    """What the watcher needs of a waiting order."""

    order_id: str
    order_type: str
    token_in: str
    token_out: str
    amount: float
    limit_price: float | None = None
    max_price: float | None = None
    expires_at: float | None = None

    @classmethod
    def of(cls, order: Order) -> Watch:
        return cls(
            order.order_id,
            order.order_type,
            order.token_in,
            order.token_out,
            order.amount,
            order.limit_price,
            order.max_price,
            order.expires_at,
        )

    @property
    def pair(self) -> tuple[str, str]:
        return (self.token_in, self.token_out)
