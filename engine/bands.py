"""Queue bands: the order in which queued work is served, and which work spends a rate-limit token."""

from __future__ import annotations

from enum import IntEnum


class Band(IntEnum):
    """Served in this order, FIFO within a band. Only MARKET and TRIGGERED runs take a token."""

    CONTROL = 0  # cancel or expire an order: bookkeeping, served first
    MARKET = 1  # orders that execute now (and resumed ones)
    ARM = 2  # a new waiting order: mark it waiting and hand it to the watcher
    TRIGGERED = 3  # a waiting order whose condition holds: run the market path

    @property
    def needs_token(self) -> bool:
        return self in (Band.MARKET, Band.TRIGGERED)
