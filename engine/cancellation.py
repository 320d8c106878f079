"""Cancelling an order: one atomic decision against the submit claim, then a short wait for the
order to close (the dispatcher serves the cancel first, in the CONTROL band)."""

from __future__ import annotations

from typing import Protocol

from engine.bands import Band
from engine.clock import Clock
from engine.errors import EngineError, OrderNotFound
from engine.lifecycle import is_terminal
from engine.models import Order


class CancelRefused(EngineError):
    """Too late to cancel: the order is finished, or was claimed for submission to a venue."""

    def __init__(self, order_id: str, reason: str) -> None:
        super().__init__(order_id, reason)
        self.order_id = order_id
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class CancelJournal(Protocol):
    async def request_cancel(self, order_id: str) -> bool: ...

    async def get(self, order_id: str) -> Order | None: ...


class CancelQueue(Protocol):
    async def enqueue(self, order_id: str, band: Band, at_ms: float) -> None: ...


async def cancel(
    order_id: str, journal: CancelJournal, queue: CancelQueue, clock: Clock, wait_s: float = 3.0, poll_s: float = 0.05
) -> Order | None:
    """Flag the order for cancellation and queue its closing; return it once closed, or None if it has
    not closed within ``wait_s`` (it will: the flag is durable). Raises :class:`OrderNotFound` or
    :class:`CancelRefused`."""
    if not await journal.request_cancel(order_id):
        order = await journal.get(order_id)
        if order is None:
            raise OrderNotFound(order_id)
        if is_terminal(order.status):
            raise CancelRefused(order_id, f"order is already {order.status.value}")
        raise CancelRefused(order_id, "order was already submitted to a venue; it can no longer be cancelled")
    await queue.enqueue(order_id, Band.CONTROL, clock.epoch_ms())
    deadline = clock.now() + wait_s
    while clock.now() < deadline:
        order = await journal.get(order_id)
        if order is not None and is_terminal(order.status):
            return order
        await clock.sleep(poll_s)
    return None
