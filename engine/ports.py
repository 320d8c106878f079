"""The storage and messaging ports the core depends on; adapters implement them.

Real adapters: :mod:`engine.adapters.postgres` (journal, ledger), :mod:`engine.adapters.redis_store`
(active orders, queue) and the StatusHub actor (event sink). Unit tests use in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from engine.models import Order, OrderEvent


class OrderJournal(Protocol):
    """The durable history (PostgreSQL): the source of truth for every order."""

    async def load(self, order_id: str) -> tuple[Order, int] | None:
        """The order and the seq of its last event, or None if unknown."""

    async def record(self, order: Order, events: Sequence[OrderEvent], claim: bool = False) -> bool:
        """Append ``events`` (in seq order) and store ``order`` (its state after the last of them),
        atomically. Idempotent per (order, seq).

        With ``claim``, the same write marks the order as about to be submitted, unless a cancel was
        requested first (one atomic decision: exactly one of the two wins). Returns whether the order is
        claimed (always True without ``claim``).
        """

    async def cancel_requested(self, order_id: str) -> bool: ...

    async def set_triggered(self, order_id: str, at_ms: float | None) -> None:
        """Mark a waiting order as triggered (or re-armed, with None)."""


class ActiveOrders(Protocol):
    """The hot copy of orders in flight (Redis)."""

    async def update(self, order: Order) -> None: ...

    async def finish(self, order: Order) -> None:
        """Store the terminal state and drop the order from the active set."""


class Watcher(Protocol):
    """Holds waiting LIMIT/SNIPER orders until their condition holds (the PriceWatcher)."""

    async def watch(self, order: Order) -> None: ...

    async def unwatch(self, order_id: str) -> None: ...


class EventSink(Protocol):
    """Where live events go first (the StatusHub), before they are persisted."""

    async def publish(self, event: OrderEvent) -> None: ...
