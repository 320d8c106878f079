"""Order metrics from an order's own transitions: finished orders, retries and stage latencies, from the
events' times; and the workflow telling its observer of every transition."""

from __future__ import annotations

import random

import pytest

from engine.errors import InsufficientLiquidity, NoPoolError, SlippageExceeded, TransientVenueError, VenueError
from engine.execution import OrderWorkflow
from engine.instruments import ORDERS_FINISHED, RETRIES, STAGE_SECONDS, VENUE_REQUESTS, VENUE_SECONDS, Stage, measured, outcome_of
from engine.metrics import Buckets
from engine.models import Order, OrderEvent, OrderStatus
from engine.stages import OrderMetrics

S = OrderStatus
OID = "order_1764000000000_0000abcd"
T0 = 1_764_000_000_000.0


def stage(name: Stage) -> Buckets:
    return STAGE_SECONDS.value(name.value)


class Moves:
    """Feeds an observer the transitions of one order, as OrderRun would: the order after each event."""

    def __init__(self, observer: OrderMetrics, order: Order) -> None:
        self.observer = observer
        self.order = order
        self.seq = 1

    def to(self, status: OrderStatus, at_ms: float, **fields: object) -> None:
        self.seq += 1
        event = OrderEvent(order_id=self.order.order_id, seq=self.seq, status=status, at=at_ms, **fields)
        self.order = self.order.apply(event)
        self.observer.transition(self.order, event)


class Delta:
    """Counts before and after: the registry is this process's, shared by every test."""

    def __init__(self) -> None:
        self.before = self.read()

    @staticmethod
    def read() -> dict[str, float]:
        counts = {f"stage:{s.value}": float(stage(s).count) for s in Stage}
        counts |= {f"sum:{s.value}": stage(s).total for s in Stage}
        counts["retries"] = RETRIES.value()
        for status in S:
            for kind in ("MARKET", "LIMIT"):
                counts[f"finished:{status.value}:{kind}"] = ORDERS_FINISHED.value(status.value, kind)
        return counts

    def changes(self) -> dict[str, float]:
        after = self.read()
        return {k: round(after[k] - self.before[k], 6) for k in after if after[k] != self.before[k]}


def test_a_market_order_times_every_stage_from_its_event_times(fakes) -> None:
    delta = Delta()
    moves = Moves(OrderMetrics(), fakes.order(status=S.PENDING))  # submitted at T0
    moves.to(S.ROUTING, T0 + 1500, attempt=1)
    moves.to(S.BUILDING, T0 + 1700)
    moves.to(S.SUBMITTED, T0 + 1710)
    moves.to(S.CONFIRMED, T0 + 4210, tx_hash="tx")

    assert delta.changes() == {
        "stage:queue_wait": 1,
        "sum:queue_wait": 1.5,
        "stage:routing": 1,
        "sum:routing": 0.2,
        "stage:building": 1,
        "sum:building": 0.01,
        "stage:landing": 1,
        "sum:landing": 2.5,
        "stage:end_to_end": 1,
        "sum:end_to_end": 4.21,
        "finished:confirmed:MARKET": 1,
    }


def test_a_retry_counts_once_and_routing_is_timed_from_the_attempt_that_built(fakes) -> None:
    delta = Delta()
    observer = OrderMetrics()
    moves = Moves(observer, fakes.order(status=S.PENDING))
    moves.to(S.ROUTING, T0 + 100, attempt=1)
    moves.to(S.ROUTING, T0 + 900, attempt=2, error="timeout")
    moves.to(S.BUILDING, T0 + 1000)
    moves.to(S.FAILED, T0 + 1100, failure_reason="no")

    changes = delta.changes()
    assert changes["retries"] == 1
    assert (changes["stage:queue_wait"], changes["sum:queue_wait"]) == (1, 0.1)
    assert (changes["stage:routing"], changes["sum:routing"]) == (1, 0.1)
    assert "stage:landing" not in changes  # failed after building: nothing landed
    assert changes["finished:failed:MARKET"] == 1
    assert observer.tracked() == 0


def test_a_triggered_limit_order_waits_in_the_queue_from_its_trigger(fakes) -> None:
    delta = Delta()
    observer = OrderMetrics()
    order = fakes.order(status=S.WAITING, order_type="LIMIT", limit_price=100.0, triggered_at=T0 + 60_000)
    moves = Moves(observer, order)
    moves.to(S.ROUTING, T0 + 60_250, attempt=1)
    moves.to(S.WAITING, T0 + 60_300, reason="price moved away")

    changes = delta.changes()
    assert (changes["stage:queue_wait"], changes["sum:queue_wait"]) == (1, 0.25)
    assert observer.tracked() == 0  # handed back to the watcher: the next run starts afresh
    assert not any(k.startswith("finished") for k in changes)


def test_a_resumed_run_times_only_stages_it_saw_both_ends_of(fakes) -> None:
    delta = Delta()
    moves = Moves(OrderMetrics(), fakes.order(status=S.SUBMITTED, attempts=1))
    moves.to(S.CONFIRMED, T0 + 9000, tx_hash="tx")

    changes = delta.changes()
    assert "stage:landing" not in changes
    assert (changes["stage:end_to_end"], changes["sum:end_to_end"]) == (1, 9.0)


def test_cancelled_and_expired_orders_count_as_finished(fakes) -> None:
    delta = Delta()
    Moves(OrderMetrics(), fakes.order(status=S.PENDING)).to(S.CANCELLED, T0 + 10, reason="client")
    Moves(OrderMetrics(), fakes.order(status=S.WAITING, order_type="LIMIT", limit_price=1.0)).to(S.EXPIRED, T0 + 20, reason="late")

    changes = delta.changes()
    assert changes["finished:cancelled:MARKET"] == 1
    assert changes["finished:expired:LIMIT"] == 1


def test_marks_are_bounded(fakes) -> None:
    observer = OrderMetrics(keep=3)
    for i in range(5):
        Moves(observer, fakes.order(order_id=f"order_1764000000000_0000000{i}", status=S.PENDING)).to(S.ROUTING, T0, attempt=1)
    assert observer.tracked() == 3


async def test_the_workflow_tells_its_observer_every_transition(fakes, journal, active, sink, clock) -> None:
    seen: list[tuple[OrderStatus, OrderStatus, int]] = []

    class Recorder:
        def transition(self, order: Order, event: OrderEvent) -> None:
            seen.append((order.status, event.status, event.seq))

    venues = {name: fakes.Venue(name, rate=rate) for name, rate in (("raydium", 150.0), ("meteora", 152.0))}
    journal.put(fakes.order(amount=2.0))
    workflow = OrderWorkflow(
        venues, sink, journal, active, clock, rng=random.Random(0), observer=Recorder(), settlement=fakes.Settlement(venues)
    )
    await workflow.run(OID)

    assert seen == [(S.ROUTING, S.ROUTING, 2), (S.BUILDING, S.BUILDING, 3), (S.SUBMITTED, S.SUBMITTED, 4), (S.CONFIRMED, S.CONFIRMED, 5)]


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (None, "ok"),
        (TransientVenueError("raydium", "timeout"), "transient_venue"),
        (SlippageExceeded("raydium", "too far"), "slippage_exceeded"),
        (NoPoolError("raydium", "none"), "no_pool"),
        (InsufficientLiquidity("raydium", "dry"), "insufficient_liquidity"),
        (VenueError("raydium", "no"), "venue"),
        (RuntimeError("bug"), "unexpected"),
    ],
)
def test_venue_outcomes_are_named_by_error_kind(error: BaseException | None, outcome: str) -> None:
    assert outcome_of(error) == outcome


async def test_measured_counts_a_venue_call_by_outcome_and_times_it() -> None:
    async def fine() -> int:
        return 1

    async def broken() -> int:
        raise TransientVenueError("v-test", "timeout")

    ok_before = VENUE_REQUESTS.value("v-test", "quote", "ok")
    assert await measured("v-test", "quote", fine()) == 1
    with pytest.raises(TransientVenueError):
        await measured("v-test", "quote", broken())
    assert VENUE_REQUESTS.value("v-test", "quote", "ok") == ok_before + 1
    assert VENUE_REQUESTS.value("v-test", "quote", "transient_venue") >= 1
    assert VENUE_SECONDS.value("v-test", "quote").count >= 2
