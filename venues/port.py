"""The venue port: what the engine needs from a DEX, and nothing more.

A venue quotes, shows its pool state for a pair (so the router can price a split locally),
swaps, and answers whether a swap for an order already exists (a real adapter asks the
chain for the transaction's signature). The engine never names a venue in its logic; it
holds whatever the registry (:mod:`venues.registry`) built.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from engine.models import DexQuote, SwapResult, VenueName


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

    async def swap(self, order_id: str, quote: DexQuote, min_amount_out: float = 0.0) -> SwapResult:
        """Swap ``quote.amount_in``; raise :class:`engine.errors.SlippageExceeded` (swapping nothing)
        if it would give less than ``min_amount_out``."""
        ...

    async def find_swap(self, order_id: str) -> SwapResult | None:
        """The swap this venue made for ``order_id``, if any (waiting for one still in flight)."""
        ...

    async def close(self) -> None:
        """Release what the venue holds (connections)."""
        ...
