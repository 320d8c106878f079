"""Unit-tier fixtures: a guard against starting Ray, and in-memory fakes of the engine's ports.

Nothing here touches Ray, Redis, PostgreSQL or the network. Time is a
:class:`engine.clock.ManualClock`, so back-off sleeps are instant and recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from engine.clock import ManualClock
from engine.errors import DuplicateRequest, StoreUnavailable, TransientVenueError, VenueError
from engine.models import DexQuote, Order, OrderEvent, OrderStatus, OrderType, SwapResult, VenueName


@pytest.fixture(autouse=True)
def _forbid_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit test can never start Ray: ``ray.init`` raises."""
    try:
        import ray
    except ImportError:
        return

    def _refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unit tests must not start Ray")

    monkeypatch.setattr(ray, "init", _refuse)


# --------------------------------------------------------------------------- journal


class FakeJournal:
    """An in-memory OrderJournal (load/record) that is also an IntakeJournal (insert_order/delete_order).

    ``fail(n)`` makes the next ``n`` calls (of the listed operations) raise StoreUnavailable.
    """

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        self.seqs: dict[str, int] = {}
        self.events: list[OrderEvent] = []
        self.keys: dict[str, tuple[str, str | None]] = {}
        self.deleted: list[str] = []
        self.calls: list[str] = []
        self.raised = 0
        self._fail_left = 0
        self._fail_ops: frozenset[str] = frozenset()

    def fail(self, times: int, on: Iterable[str] = ("load", "record", "insert_order", "delete_order")) -> None:
        self._fail_left = times
        self._fail_ops = frozenset(on)

    def _maybe_fail(self, op: str) -> None:
        self.calls.append(op)
        if self._fail_left > 0 and op in self._fail_ops:
            self._fail_left -= 1
            self.raised += 1
            raise StoreUnavailable("postgres", f"simulated outage in {op}")

    def put(self, order: Order, seq: int = 1) -> None:
        """Seed an order as if its first ``seq`` events had been recorded."""
        self.orders[order.order_id] = order
        self.seqs[order.order_id] = seq

    def events_for(self, order_id: str) -> list[OrderEvent]:
        return [e for e in self.events if e.order_id == order_id]

    async def load(self, order_id: str) -> tuple[Order, int] | None:
        self._maybe_fail("load")
        if order_id not in self.orders:
            return None
        return self.orders[order_id], self.seqs[order_id]

    async def record(self, order: Order, event: OrderEvent) -> None:
        self._maybe_fail("record")
        if any(e.order_id == event.order_id and e.seq == event.seq for e in self.events):
            return  # idempotent per (order, seq)
        self.events.append(event)
        self.orders[order.order_id] = order
        self.seqs[order.order_id] = event.seq

    async def insert_order(
        self, order: Order, first: OrderEvent, idempotency_key: str | None = None, request_hash: str | None = None
    ) -> None:
        self._maybe_fail("insert_order")
        if idempotency_key is not None:
            if idempotency_key in self.keys:
                original_id, original_hash = self.keys[idempotency_key]
                raise DuplicateRequest(original_id, original_hash)
            self.keys[idempotency_key] = (order.order_id, request_hash)
        self.orders[order.order_id] = order
        self.seqs[order.order_id] = first.seq
        self.events.append(first)

    async def delete_order(self, order_id: str) -> None:
        self._maybe_fail("delete_order")
        self.deleted.append(order_id)
        self.orders.pop(order_id, None)
        self.seqs.pop(order_id, None)
        self.events = [e for e in self.events if e.order_id != order_id]
        self.keys = {k: v for k, v in self.keys.items() if v[0] != order_id}


class FakeQueue:
    """An in-memory IntakeQueue; ``failing`` makes accept raise StoreUnavailable."""

    def __init__(self, failing: bool = False) -> None:
        self.failing = failing
        self.accepted: list[Order] = []

    async def accept(self, order: Order) -> None:
        if self.failing:
            raise StoreUnavailable("redis", "simulated outage")
        self.accepted.append(order)


# --------------------------------------------------------------------------- active orders, sink


class FakeActive:
    """An in-memory ActiveOrders: records every call and keeps the active set."""

    def __init__(self, failing: bool = False) -> None:
        self.failing = failing
        self.calls: list[tuple[str, str, OrderStatus]] = []
        self.active: set[str] = set()
        self.latest: dict[str, Order] = {}

    async def update(self, order: Order) -> None:
        self.calls.append(("update", order.order_id, order.status))
        if self.failing:
            raise StoreUnavailable("redis", "simulated outage")
        self.active.add(order.order_id)
        self.latest[order.order_id] = order

    async def finish(self, order: Order) -> None:
        self.calls.append(("finish", order.order_id, order.status))
        if self.failing:
            raise StoreUnavailable("redis", "simulated outage")
        self.active.discard(order.order_id)
        self.latest[order.order_id] = order


class FakeSink:
    """An in-memory EventSink; ``failing`` makes publish raise (after nothing is appended)."""

    def __init__(self, failing: bool = False) -> None:
        self.failing = failing
        self.events: list[OrderEvent] = []
        self.attempts = 0

    async def publish(self, event: OrderEvent) -> None:
        self.attempts += 1
        if self.failing:
            raise RuntimeError("status hub is down")
        self.events.append(event)


# --------------------------------------------------------------------------- venue


@dataclass
class InFlight:
    """Shared by several fake venues to observe overlapping quote calls."""

    now: int = 0
    peak: int = 0


@dataclass
class FakeVenue:
    """A scripted Venue: quotes ``amount * rate``; fails the first N quotes or swaps on request.

    ``swap_lands_then_fails`` records the swap (so ``find_swap`` sees it) and then raises,
    as a venue does when the confirmation is lost.
    """

    name: VenueName
    rate: float = 150.0
    liquidity: float = 1_000_000.0
    fee_bps: float = 25.0
    price_impact_pct: float = 0.1
    fail_quotes: int = 0
    fail_swaps: int = 0
    quote_error: type[VenueError] = TransientVenueError
    swap_lands_then_fails: bool = False
    slippage: float = 0.999
    in_flight: InFlight | None = None
    quotes: int = 0
    swap_calls: int = 0
    swaps: int = 0  # swaps that landed
    ledger: dict[str, SwapResult] = field(default_factory=dict)
    find_calls: int = 0

    async def quote(self, token_in: str, token_out: str, amount: float) -> DexQuote:
        self.quotes += 1
        if self.in_flight is not None:
            self.in_flight.now += 1
            self.in_flight.peak = max(self.in_flight.peak, self.in_flight.now)
            try:
                for _ in range(5):
                    await asyncio.sleep(0)
            finally:
                self.in_flight.now -= 1
        if self.fail_quotes > 0:
            self.fail_quotes -= 1
            raise self.quote_error(self.name.value, "quote timed out (scripted)")
        out = amount * self.rate
        return DexQuote(
            venue=self.name,
            token_in=token_in,
            token_out=token_out,
            amount_in=amount,
            amount_out=out,
            price=out / amount,
            spot_price=self.rate,
            fee_bps=self.fee_bps,
            price_impact_pct=self.price_impact_pct,
            liquidity=self.liquidity,
            quoted_at=1_764_000_000_000.0,
        )

    async def swap(self, order_id: str, quote: DexQuote) -> SwapResult:
        self.swap_calls += 1
        if order_id in self.ledger:
            return self.ledger[order_id]
        if self.fail_swaps > 0 and not self.swap_lands_then_fails:
            self.fail_swaps -= 1
            raise TransientVenueError(self.name.value, "transaction send timed out (scripted)")
        self.swaps += 1
        out = quote.amount_out * self.slippage
        result = SwapResult(
            venue=self.name,
            order_id=order_id,
            tx_hash=f"tx-{self.name.value}-{self.swaps}",
            amount_in=quote.amount_in,
            amount_out=out,
            execution_price=out / quote.amount_in,
            executed_at=1_764_000_001_000.0,
        )
        self.ledger[order_id] = result
        if self.fail_swaps > 0:
            self.fail_swaps -= 1
            raise TransientVenueError(self.name.value, "confirmation lost (scripted)")
        return result

    async def find_swap(self, order_id: str) -> SwapResult | None:
        self.find_calls += 1
        return self.ledger.get(order_id)


def make_order(
    order_id: str = "order_1764000000000_0000abcd",
    status: OrderStatus = OrderStatus.PENDING,
    attempts: int = 0,
    token_in: str = "SOL",
    token_out: str = "USDC",
    amount: float = 2.0,
) -> Order:
    return Order(
        order_id=order_id,
        token_in=token_in,
        token_out=token_out,
        amount=amount,
        order_type=OrderType.MARKET,
        status=status,
        submitted_at=1_764_000_000_000.0,
        attempts=attempts,
    )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def journal() -> FakeJournal:
    return FakeJournal()


@pytest.fixture
def active() -> FakeActive:
    return FakeActive()


@pytest.fixture
def sink() -> FakeSink:
    return FakeSink()


@pytest.fixture
def queue() -> FakeQueue:
    return FakeQueue()


@pytest.fixture
def fakes() -> type[_Fakes]:
    """The fake classes, for tests that need to build their own."""
    return _Fakes


class _Fakes:
    Journal = FakeJournal
    Queue = FakeQueue
    Active = FakeActive
    Sink = FakeSink
    Venue = FakeVenue
    InFlight = InFlight
    order = staticmethod(make_order)
