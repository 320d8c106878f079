"""Cancelling: the atomic decision against the submit claim, and the wait for the order to close."""

from __future__ import annotations

import pytest

from engine.bands import Band
from engine.cancellation import CancelRefused, cancel
from engine.clock import ManualClock
from engine.errors import OrderNotFound
from engine.models import Order, OrderStatus
from tests.unit.conftest import make_order

S = OrderStatus
OID = "order_1764000000000_0000abcd"


class Journal:
    def __init__(self, order: Order | None, flag: bool = True, closes_after: int | None = None) -> None:
        self.order = order
        self.flag = flag
        self.closes_after = closes_after
        self.reads = 0

    async def request_cancel(self, order_id: str) -> bool:
        return self.flag

    async def get(self, order_id: str) -> Order | None:
        self.reads += 1
        if self.order is not None and self.closes_after is not None and self.reads > self.closes_after:
            return self.order.model_copy(update={"status": S.CANCELLED})
        return self.order


class Queue:
    def __init__(self) -> None:
        self.queued: list[tuple[str, Band]] = []

    async def enqueue(self, order_id: str, band: Band, at_ms: float) -> None:
        self.queued.append((order_id, band))


async def test_a_flagged_order_is_queued_for_closing_and_returned_once_closed() -> None:
    journal, queue = Journal(make_order(OID), closes_after=2), Queue()
    order = await cancel(OID, journal, queue, ManualClock())
    assert order is not None and order.status is S.CANCELLED
    assert queue.queued == [(OID, Band.CONTROL)]


async def test_an_order_that_does_not_close_in_time_gives_none() -> None:
    clock = ManualClock()
    order = await cancel(OID, Journal(make_order(OID)), Queue(), clock, wait_s=1.0, poll_s=0.25)
    assert order is None
    assert sum(clock.slept) >= 1.0


@pytest.mark.parametrize(
    ("status", "reason"),
    [(S.CONFIRMED, "order is already confirmed"), (S.SUBMITTED, "order was already submitted to a venue; it can no longer be cancelled")],
)
async def test_too_late_is_refused_with_why(status: OrderStatus, reason: str) -> None:
    queue = Queue()
    with pytest.raises(CancelRefused) as info:
        await cancel(OID, Journal(make_order(OID, status=status), flag=False), queue, ManualClock())
    assert info.value.reason == reason
    assert queue.queued == []


async def test_an_unknown_order_is_not_found() -> None:
    with pytest.raises(OrderNotFound):
        await cancel(OID, Journal(None, flag=False), Queue(), ManualClock())
