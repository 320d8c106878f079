"""The ports the core depends on; adapters implement them.

Real adapters: :mod:`engine.adapters.postgres` (journal), :mod:`engine.adapters.redis_store` (active
orders, queue), the StatusHub and PriceWatcher actors (event sink, watcher), and the venues of
:mod:`venues` (the :class:`Venue` port: a DEX as the engine needs it; the engine never names one in
its logic and holds whatever the registry built; a venue settles through :mod:`engine.settlement`),
:mod:`engine.stages` (run observer). Unit tests use
in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from engine.models import DexQuote, Order, OrderEvent, VenueName


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


@runtime_checkable
class PoolView(Protocol):
    """A copy of a pool's state for one pair, to price any amount locally (as a real engine reads a
    pool account)."""

    def output(self, token_in: str, amount: float) -> float:
        """What ``amount`` of ``token_in`` would give now; raises ``ValueError`` past the pool's depth."""
        ...


class Venue(Protocol):
    name: VenueName

    async def pairs(self) -> frozenset[tuple[str, str]]:
        """Every ``(tokenIn, tokenOut)`` it can swap now, both orientations of each pool."""
        ...

    async def quote(self, token_in: str, token_out: str, amount: float) -> DexQuote:
        """Raise :class:`engine.errors.VenueError` (transient or not) when it cannot quote."""
        ...

    async def snapshot(self, token_in: str, token_out: str) -> PoolView | None:
        """The pool's state for the pair, or None if the venue lists no pool for it."""
        ...

    async def close(self) -> None:
        """Release what the venue holds (connections)."""
        ...


class RunObserver(Protocol):
    """Told of every transition an order run makes, as it is made (metrics). Must be quick and must not raise."""

    def transition(self, order: Order, event: OrderEvent) -> None:
        """``order`` is the state after ``event``."""
