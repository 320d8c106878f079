"""The storage and messaging ports the core depends on; adapters implement them.

Real adapters: :mod:`engine.adapters.postgres` (journal, ledger), :mod:`engine.adapters.redis_store`
(active orders, queue) and the StatusHub actor (event sink). Unit tests use in-memory fakes.
"""

from __future__ import annotations

from typing import Protocol

from engine.models import Order, OrderEvent


class OrderJournal(Protocol):
    """The durable history (PostgreSQL): the source of truth for every order."""

    async def load(self, order_id: str) -> tuple[Order, int] | None:
        """The order and the seq of its last event, or None if unknown."""

    async def record(self, order: Order, event: OrderEvent) -> None:
        """Append ``event`` and store ``order`` (its state after the event). Idempotent per (order, seq)."""


class ActiveOrders(Protocol):
    """The hot copy of orders in flight (Redis)."""

    async def update(self, order: Order) -> None: ...

    async def finish(self, order: Order) -> None:
        """Store the terminal state and drop the order from the active set."""


class EventSink(Protocol):
    """Where live events go first (the StatusHub), before they are persisted."""

    async def publish(self, event: OrderEvent) -> None: ...
