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
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from engine.models import DexQuote, Order, OrderEvent, VenueName

if TYPE_CHECKING:
    from engine.watching import Trigger


class OrderJournal(Protocol):
    """The durable history (PostgreSQL): the source of truth for every order."""

    async def load(self, order_id: str) -> tuple[Order, int] | None:
        """The order and the seq of its last event, or None if unknown."""

    async def record(self, order: Order, events: Sequence[OrderEvent], claim: bool = False, epoch: int | None = None) -> bool:
        """Append ``events`` (in seq order) and store ``order`` (its state after the last of them),
        atomically. Idempotent per (order, seq).

        With ``claim``, the same write marks the order as about to be submitted, unless a cancel was
        requested first (one atomic decision: exactly one of the two wins). Returns whether the order is
        claimed (always True without ``claim``).

        With ``epoch`` (a fenced run's), nothing is written unless that run still holds the order:
        :class:`engine.errors.StaleRun` instead.
        """

    async def cancel_requested(self, order_id: str) -> bool: ...

    async def set_triggered(self, order_id: str, at_ms: float | None, epoch: int | None = None) -> None:
        """Mark a waiting order as triggered (or re-armed, with None); with ``epoch``, fenced like
        :meth:`record`."""


class ClaimedRun(Protocol):
    """What claiming a run gives: the order, the seq of its last stored event, the run's epoch."""

    @property
    def order(self) -> Order: ...

    @property
    def seq(self) -> int: ...

    @property
    def epoch(self) -> int: ...


@runtime_checkable
class FencedJournal(OrderJournal, Protocol):
    """A journal that fences runs: each run claims the order (a new epoch) and writes only while it
    holds it, so a run another one replaced (a zombie executor) can neither write nor sign."""

    async def claim_run(self, order_id: str) -> ClaimedRun | None:
        """Increment the order's run epoch and load it, atomically; None if the order is unknown."""

    async def assert_current(self, order_id: str, epoch: int) -> bool:
        """Whether the run of ``epoch`` still holds the order."""


class ActiveOrders(Protocol):
    """The hot copy of orders in flight (Redis)."""

    async def update(self, order: Order, epoch: int | None = None) -> None:
        """Store the order's state; with ``epoch`` (a fenced run's), ignored if a newer run wrote it."""

    async def finish(self, order: Order, epoch: int | None = None) -> None:
        """Store the terminal state and drop the order from the active set (fenced like :meth:`update`)."""


class Watcher(Protocol):
    """Holds waiting LIMIT/SNIPER orders until their condition holds (the PriceWatcher)."""

    async def watch(self, order: Order) -> None: ...

    async def unwatch(self, order_id: str) -> None: ...


@runtime_checkable
class TriggerSource(Protocol):
    """A watcher that keeps what fired each order for a while, so its run can swap on that pool state."""

    async def trigger(self, order_id: str) -> Trigger | None:
        """What fired the order (handed out once), or None if it is not held (any more)."""
        ...


class EventSink(Protocol):
    """Where live events go first (the StatusHub), before they are persisted."""

    async def publish(self, event: OrderEvent, epoch: int | None = None) -> None:
        """Publish a live event; with ``epoch`` (the run's), a sink may drop events of runs older
        than the newest it has seen for the order."""


@runtime_checkable
class PoolView(Protocol):
    """A copy of a pool's state for one pair, to price any amount locally (as a real engine reads a
    pool account)."""

    def output(self, token_in: str, amount: float) -> float:
        """What ``amount`` of ``token_in`` would give now; raises ``ValueError`` past the pool's depth."""
        ...

    def quote(self, venue: VenueName, token_in: str, token_out: str, amount: float, at_ms: float) -> DexQuote:
        """What the venue would quote for ``amount`` of ``token_in`` in this state (``quoted_at`` = ``at_ms``);
        raises ``ValueError`` past the pool's depth."""
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
