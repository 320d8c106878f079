"""Unit-tier fixtures: a guard against starting Ray, and in-memory fakes of the engine's ports.

Nothing here touches Ray, Redis, PostgreSQL or the network. Time is a
:class:`engine.clock.ManualClock`, so back-off sleeps are instant and recorded.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from engine.clock import ManualClock
from engine.errors import DuplicateRequest, SlippageExceeded, StoreUnavailable, TransientVenueError, VenueError
from engine.intake import NewOrder
from engine.models import DexQuote, Order, OrderEvent, OrderStatus, OrderType, RoutingDecision, SwapResult, VenueName
from engine.settlement import Checkpoint, LegRequest, NotAllowedToSign, no_checkpoint
from venues.simulated import PoolSnapshot
from venues.simulated.pools import ConstantProductPool, PoolExhausted


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
    """An in-memory OrderJournal that is also an IntakeJournal (insert_orders/delete_orders).

    ``fail(n)`` makes the next ``n`` calls (of the listed operations) raise StoreUnavailable.

    The cancel flag, the submit claim and ``triggered_at`` live beside the stored order, as
    they do in PostgreSQL (columns that ``record`` never writes): ``load`` overlays them.
    ``request_cancel`` mirrors the adapter: refused once the order is claimed for submission.
    ``cancel_before_claim`` makes a client's cancel land just before the next claiming ``record``
    (the race that the claim exists to settle).
    """

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        self.seqs: dict[str, int] = {}
        self.events: list[OrderEvent] = []
        self.keys: dict[str, tuple[str, str | None]] = {}
        self.deleted: list[str] = []
        self.calls: list[str] = []
        self.writes: list[list[OrderStatus]] = []  # the statuses each record call carried
        self._seen: set[tuple[str, int]] = set()
        self.raised = 0
        self.cancel_flags: set[str] = set()
        self.claimed: set[str] = set()
        self.triggered: dict[str, float | None] = {}
        self.triggered_calls: list[tuple[str, float | None]] = []
        self.cancel_before_claim = False
        self._fail_left = 0
        self._fail_ops: frozenset[str] = frozenset()

    def fail(self, times: int, on: Iterable[str] = ("load", "record", "insert_orders", "delete_orders")) -> None:
        self._fail_left = times
        self._fail_ops = frozenset(on)

    def _maybe_fail(self, op: str) -> None:
        self.calls.append(op)
        if self._fail_left > 0 and op in self._fail_ops:
            self._fail_left -= 1
            self.raised += 1
            raise StoreUnavailable("postgres", f"simulated outage in {op}")

    def put(self, order: Order, seq: int = 1) -> None:
        """Seed an order as if its first ``seq`` events had been recorded (with its cancel flag and trigger)."""
        self.orders[order.order_id] = order
        self.seqs[order.order_id] = seq
        if order.cancel_requested:
            self.cancel_flags.add(order.order_id)
        self.triggered[order.order_id] = order.triggered_at

    def request_cancel(self, order_id: str) -> bool:
        """A client's cancel: flagged unless the order was already claimed for submission."""
        if order_id in self.claimed:
            return False
        self.cancel_flags.add(order_id)
        return True

    def events_for(self, order_id: str) -> list[OrderEvent]:
        return [e for e in self.events if e.order_id == order_id]

    async def load(self, order_id: str) -> tuple[Order, int] | None:
        self._maybe_fail("load")
        if order_id not in self.orders:
            return None
        order = self.orders[order_id].model_copy(
            update={"cancel_requested": order_id in self.cancel_flags, "triggered_at": self.triggered.get(order_id)}
        )
        return order, self.seqs[order_id]

    async def record(self, order: Order, events: Sequence[OrderEvent], claim: bool = False, epoch: int | None = None) -> bool:
        self._maybe_fail("record")
        self.writes.append([e.status for e in events])
        if claim:
            self.calls.append("claim")
            if self.cancel_before_claim:
                self.cancel_before_claim = False
                self.request_cancel(order.order_id)
        for event in events:
            if (event.order_id, event.seq) not in self._seen:  # idempotent per (order, seq)
                self._seen.add((event.order_id, event.seq))
                self.events.append(event)
        self.orders[order.order_id] = order
        self.seqs[order.order_id] = max(self.seqs.get(order.order_id, 0), events[-1].seq)
        if not claim:
            return True
        if order.order_id not in self.cancel_flags:
            self.claimed.add(order.order_id)
        return order.order_id in self.claimed

    async def cancel_requested(self, order_id: str) -> bool:
        self._maybe_fail("cancel_requested")
        return order_id in self.cancel_flags

    async def set_triggered(self, order_id: str, at_ms: float | None, epoch: int | None = None) -> None:
        self._maybe_fail("set_triggered")
        self.triggered_calls.append((order_id, at_ms))
        self.triggered[order_id] = at_ms

    async def insert_orders(self, batch: list[NewOrder]) -> list[DuplicateRequest | None]:
        self._maybe_fail("insert_orders")
        answer: list[DuplicateRequest | None] = []
        for item in batch:
            if item.idempotency_key is not None and item.idempotency_key in self.keys:
                answer.append(DuplicateRequest(*self.keys[item.idempotency_key]))
                continue
            if item.idempotency_key is not None:
                self.keys[item.idempotency_key] = (item.order.order_id, item.request_hash)
            self.orders[item.order.order_id] = item.order
            self.seqs[item.order.order_id] = item.first.seq
            self.events.append(item.first)
            answer.append(None)
        return answer

    async def delete_orders(self, order_ids: list[str]) -> None:
        self._maybe_fail("delete_orders")
        for order_id in order_ids:
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

    async def accept_many(self, orders: list[Order]) -> None:
        if self.failing:
            raise StoreUnavailable("redis", "simulated outage")
        self.accepted.extend(orders)


# --------------------------------------------------------------------------- active orders, sink


class FakeActive:
    """An in-memory ActiveOrders: records every call and keeps the active set."""

    def __init__(self, failing: bool = False) -> None:
        self.failing = failing
        self.calls: list[tuple[str, str, OrderStatus]] = []
        self.active: set[str] = set()
        self.latest: dict[str, Order] = {}

    async def update(self, order: Order, epoch: int | None = None) -> None:
        self.calls.append(("update", order.order_id, order.status))
        if self.failing:
            raise StoreUnavailable("redis", "simulated outage")
        self.active.add(order.order_id)
        self.latest[order.order_id] = order

    async def finish(self, order: Order, epoch: int | None = None) -> None:
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

    async def publish(self, event: OrderEvent, epoch: int | None = None) -> None:
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
    """A scripted Venue: quotes ``amount * rate`` (or, given a ``pool``, what the pool would fill).

    * ``fail_quotes`` / ``fail_swaps``: the next N quotes or swaps raise ``quote_error`` / a transient error.
    * ``swap_lands_then_fails`` records the swap (so ``find_swap`` sees it) and then raises,
      as a venue does when the confirmation is lost.
    * A swap gives ``quote.amount_out * slippage``; if that is under ``min_amount_out`` it raises
      :class:`SlippageExceeded` and swaps nothing, as the real venue does. ``slippage_fails``
      forces that for the next N swaps; ``rate_after_slippage`` is where the price went
      (what the re-quote sees).
    * ``snapshot`` gives a :class:`PoolSnapshot` over a copy of ``pool``, or None without one.
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
    slippage_fails: int = 0
    rate_after_slippage: float | None = None
    pool: ConstantProductPool | None = None
    base: str = "SOL"
    in_flight: InFlight | None = None
    quotes: int = 0
    snapshots: int = 0
    swap_calls: int = 0
    swaps: int = 0  # swaps that landed
    min_amounts: list[float] = field(default_factory=list)  # min_amount_out of every swap call
    swap_quotes: list[DexQuote] = field(default_factory=list)  # the quote of every swap call
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
            raise self.quote_error(self.name, "quote timed out (scripted)")
        spot, impact, liquidity = self.rate, self.price_impact_pct, self.liquidity
        if self.pool is not None:
            try:
                fill = self.pool.fill(amount, x_to_y=token_in == self.base)
            except PoolExhausted as exc:
                raise TransientVenueError(self.name, str(exc)) from exc
            out, spot, impact, liquidity = fill.amount_out, fill.spot_price, fill.price_impact_pct, fill.liquidity_out
        else:
            out = amount * self.rate
        return DexQuote(
            venue=self.name,
            token_in=token_in,
            token_out=token_out,
            amount_in=amount,
            amount_out=out,
            price=out / amount,
            spot_price=spot,
            fee_bps=self.fee_bps,
            price_impact_pct=impact,
            liquidity=liquidity,
            quoted_at=1_764_000_000_000.0,
        )

    async def snapshot(self, token_in: str, token_out: str) -> PoolSnapshot | None:
        self.snapshots += 1
        if self.pool is None:
            return None
        return PoolSnapshot(copy.deepcopy(self.pool), self.base)

    async def swap(self, order_id: str, quote: DexQuote, min_amount_out: float = 0.0) -> SwapResult:
        self.swap_calls += 1
        self.min_amounts.append(min_amount_out)
        self.swap_quotes.append(quote)
        if order_id in self.ledger:
            return self.ledger[order_id]
        if self.fail_swaps > 0 and not self.swap_lands_then_fails:
            self.fail_swaps -= 1
            raise TransientVenueError(self.name, "transaction send timed out (scripted)")
        out = quote.amount_out * self.slippage
        if self.slippage_fails > 0 or out < min_amount_out:
            self.slippage_fails = max(0, self.slippage_fails - 1)
            if self.rate_after_slippage is not None:
                self.rate = self.rate_after_slippage
            raise SlippageExceeded(self.name, f"slippage exceeded: swap would give {out:.6g}, minimum {min_amount_out:.6g}")
        self.swaps += 1
        result = SwapResult(
            venue=self.name,
            order_id=order_id,
            tx_hash=f"tx-{self.name}-{self.swaps}",
            amount_in=quote.amount_in,
            amount_out=out,
            execution_price=out / quote.amount_in,
            executed_at=1_764_000_001_000.0,
        )
        self.ledger[order_id] = result
        if self.fail_swaps > 0:
            self.fail_swaps -= 1
            raise TransientVenueError(self.name, "confirmation lost (scripted)")
        return result

    async def find_swap(self, order_id: str) -> SwapResult | None:
        self.find_calls += 1
        return self.ledger.get(order_id)


@dataclass
class FakeSettlement:
    """The fake venues' scripted swaps as a :class:`engine.settlement.Settler`: each leg lands (or not)
    on its own at its venue, whose ``ledger`` is the fake chain. The real protocol over a real chain is
    tested in tests/settlement."""

    venues: Mapping[VenueName, FakeVenue]
    one_transaction: bool = False
    checkpoint: Checkpoint = field(default=no_checkpoint)

    async def landed(self, order_id: str) -> dict[VenueName, SwapResult]:
        names = list(self.venues)
        found = await asyncio.gather(*(self.venues[name].find_swap(order_id) for name in names))
        return {name: swap for name, swap in zip(names, found, strict=True) if swap is not None}

    async def settle(
        self,
        order_id: str,
        account: str,
        legs: Sequence[LegRequest],
        may_sign: Callable[[], Awaitable[bool]],
        epoch: int | None = None,
    ) -> list[SwapResult]:
        if not await may_sign():
            raise NotAllowedToSign(order_id)
        calls = [self.venues[leg.quote.venue].swap(order_id, leg.quote, leg.min_amount_out) for leg in legs]
        results = await asyncio.gather(*calls, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]  # landed legs are in the venues' ledgers; the retry adopts them
        return [r for r in results if isinstance(r, SwapResult)]


# --------------------------------------------------------------------------- watcher


class FakeWatcher:
    """An in-memory Watcher: records which orders were handed over and which were dropped."""

    def __init__(self, failing: bool = False) -> None:
        self.failing = failing
        self.watched: list[Order] = []
        self.unwatched: list[str] = []

    @property
    def watched_ids(self) -> list[str]:
        return [o.order_id for o in self.watched]

    async def watch(self, order: Order) -> None:
        self.watched.append(order)

    async def unwatch(self, order_id: str) -> None:
        self.unwatched.append(order_id)
        if self.failing:
            raise RuntimeError("price watcher is down")


def make_order(
    order_id: str = "order_1764000000000_0000abcd",
    status: OrderStatus = OrderStatus.PENDING,
    attempts: int = 0,
    token_in: str = "SOL",
    token_out: str = "USDC",
    amount: float = 2.0,
    order_type: str = OrderType.MARKET,
    *,
    limit_price: float | None = None,
    max_price: float | None = None,
    expires_at: float | None = None,
    triggered_at: float | None = None,
    cancel_requested: bool = False,
    slippage_bps: int = 50,
    routing_decision: RoutingDecision | None = None,
) -> Order:
    return Order(
        order_id=order_id,
        token_in=token_in,
        token_out=token_out,
        amount=amount,
        order_type=order_type,
        status=status,
        submitted_at=1_764_000_000_000.0,
        attempts=attempts,
        limit_price=limit_price,
        max_price=max_price,
        expires_at=expires_at,
        triggered_at=triggered_at,
        cancel_requested=cancel_requested,
        slippage_bps=slippage_bps,
        routing_decision=routing_decision,
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
def watcher() -> FakeWatcher:
    return FakeWatcher()


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
    Settlement = FakeSettlement
    Watcher = FakeWatcher
    InFlight = InFlight
    order = staticmethod(make_order)
