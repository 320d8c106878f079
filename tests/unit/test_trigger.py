"""Pushed triggers without Ray: venues push pool changes, the watcher's pure decisions over pushed
states, a fired order routing on the pool state that fired it, and the dispatcher's deferred pops."""

from __future__ import annotations

import random

import pytest

from engine.bands import Band
from engine.clock import ManualClock
from engine.dispatch import DispatchPolicy
from engine.execution import OrderWorkflow
from engine.models import OrderStatus, OrderType, VenueName
from engine.watch import Watch
from engine.watching import Seen, Trigger, Verdict, decide, fresh_views
from tests.unit.conftest import FakeSettlement, FakeWatcher
from venues.simulated import METEORA, RAYDIUM, PoolSnapshot, SimulatedVenue, VenueTiming
from venues.simulated.pools import ConstantProductPool

S, T = OrderStatus, OrderType
R, M = RAYDIUM, METEORA
OID = "order_1764000000000_0000abcd"
NOW = 1_764_000_000_000.0


def cp_view(price: float) -> PoolSnapshot:
    return PoolSnapshot(ConstantProductPool(reserve_x=10_000.0, reserve_y=10_000.0 * price), "SOL")


# --------------------------------------------------------------------------- venues push


def test_a_simulated_venue_pushes_a_listing_and_a_price_move() -> None:
    venue = SimulatedVenue(R, ManualClock(), random.Random(1), timing=VenueTiming(quote_latency_s=0.0))
    pushed: list[tuple[str, str, PoolSnapshot]] = []
    venue.listeners.append(lambda base, quote, state: pushed.append((base, quote, state())))

    venue.list_pool("NEW", "SOL", 1_000_000.0, 1_000.0)
    venue.move_price("NEW", "SOL", -10.0)

    assert [(b, q) for b, q, _ in pushed] == [("NEW", "SOL"), ("NEW", "SOL")]
    listed, moved = pushed[0][2], pushed[1][2]
    assert moved.output("SOL", 1.0) > listed.output("SOL", 1.0) * 1.1  # the mint is 10% cheaper in SOL
    venue.move_price("NEW", "SOL", 50.0)
    assert pushed[1][2].output("SOL", 1.0) == moved.output("SOL", 1.0)  # a pushed state is a copy


async def test_a_pool_state_quotes_what_the_venue_quotes() -> None:
    clock = ManualClock()
    venue = SimulatedVenue(R, clock, random.Random(1), timing=VenueTiming(quote_latency_s=0.0))
    venue.list_pool("NEW", "SOL", 1_000_000.0, 1_000.0)
    state = await venue.snapshot("SOL", "NEW")
    assert state is not None

    asked = await venue.quote("SOL", "NEW", 3.0)
    local = state.quote(R, "SOL", "NEW", 3.0, clock.epoch_ms())

    assert local == asked


# --------------------------------------------------------------------------- deciding on pushes


def test_fresh_views_treat_a_venue_not_seen_lately_as_having_no_pool() -> None:
    seen = {R: Seen(cp_view(150.0), NOW - 100.0), M: Seen(cp_view(152.0), NOW - 900.0)}

    views = fresh_views([R, M], seen, NOW, max_age_ms=500.0)

    assert views == {R: seen[R].view, M: None}


def test_a_stale_better_venue_cannot_fire_a_limit_order_on_a_push() -> None:
    """Only what is fresh counts: a stale state could fire an order the market no longer meets."""
    seen = {R: Seen(cp_view(150.0), NOW), M: Seen(cp_view(160.0), NOW - 5_000.0)}
    watch = Watch(OID, T.LIMIT, "SOL", "USDC", 2.0, limit_price=155.0)

    assert decide(watch, fresh_views([R, M], seen, NOW, 500.0), NOW) is Verdict.WAIT
    assert decide(watch, {name: s.view for name, s in seen.items()}, NOW) is Verdict.TRIGGER


def test_a_trigger_keeps_only_states_within_the_age_bound() -> None:
    trigger = Trigger(OID, {R: Seen(cp_view(150.0), NOW - 100.0), M: Seen(cp_view(152.0), NOW - 600.0)}, NOW - 50.0)

    assert set(trigger.fresh(NOW, 500.0)) == {R}
    assert set(trigger.fresh(NOW, 1_000.0)) == {R, M}
    assert trigger.fresh(NOW + 1_000.0, 500.0) == {}


# --------------------------------------------------------------------------- routing on the trigger


class TriggerWatcher(FakeWatcher):
    """A watcher that kept what fired the order (a :class:`engine.ports.TriggerSource`)."""

    def __init__(self, trigger: Trigger | None) -> None:
        super().__init__()
        self.held = trigger
        self.asked = 0

    async def trigger(self, order_id: str) -> Trigger | None:
        self.asked += 1
        held, self.held = self.held, None
        return held if held is not None and held.order_id == order_id else None


@pytest.fixture
def pool_venues(fakes):
    """Raydium at 150 USDC per SOL, Meteora at 152, both real pools (quotes come from them)."""
    return {R: fakes.Venue(R, pool=cp_view(150.0).pool.copy()), M: fakes.Venue(M, pool=cp_view(152.0).pool.copy())}


def workflow(venues, watcher, journal, active, sink, clock, max_age_ms: float = 500.0) -> OrderWorkflow:
    return OrderWorkflow(
        venues=venues,
        sink=sink,
        journal=journal,
        active=active,
        clock=clock,
        rng=random.Random(0),
        watcher=watcher,
        settlement=FakeSettlement(venues),
        trigger_max_age_ms=max_age_ms,
    )


def fired(at_ms: float, views: dict[VenueName, PoolSnapshot]) -> Trigger:
    return Trigger(OID, {name: Seen(view, at_ms) for name, view in views.items()}, at_ms)


async def test_a_fired_order_routes_on_the_pool_state_that_fired_it_without_quoting(
    fakes, journal, active, sink, clock, pool_venues
) -> None:
    now = clock.epoch_ms()
    watcher = TriggerWatcher(fired(now - 20.0, {R: cp_view(150.0), M: cp_view(152.0)}))
    journal.put(fakes.order(status=S.WAITING, order_type=T.SNIPER, triggered_at=now - 20.0), seq=2)

    final = await workflow(pool_venues, watcher, journal, active, sink, clock).run(OID)

    assert final is not None and final.status is S.CONFIRMED
    assert all(v.quotes == 0 and v.snapshots == 0 for v in pool_venues.values())  # no quote round trip
    decision = final.routing_decision
    assert decision is not None and decision.venue == M
    expected = cp_view(152.0).output("SOL", 2.0)
    assert decision.amount_out == pytest.approx(expected)
    assert decision.min_amount_out == pytest.approx(expected * (1 - 50 / 10_000))  # bounded by its slippage
    assert pool_venues[M].min_amounts == [pytest.approx(decision.min_amount_out)]  # the venue is told it
    assert watcher.asked == 1


@pytest.mark.parametrize(
    ("age_ms", "max_age_ms", "triggered"),
    [(600.0, 500.0, True), (20.0, 0.0, True), (20.0, 500.0, False)],
    ids=["too-old", "turned-off", "market-order"],
)
async def test_a_stale_trigger_or_none_quotes_the_venues(
    fakes, journal, active, sink, clock, pool_venues, age_ms, max_age_ms, triggered
) -> None:
    now = clock.epoch_ms()
    watcher = TriggerWatcher(fired(now - age_ms, {R: cp_view(150.0), M: cp_view(152.0)}))
    if triggered:
        journal.put(fakes.order(status=S.WAITING, order_type=T.SNIPER, triggered_at=now - age_ms), seq=2)
    else:
        journal.put(fakes.order())

    final = await workflow(pool_venues, watcher, journal, active, sink, clock, max_age_ms).run(OID)

    assert final is not None and final.status is S.CONFIRMED
    assert all(v.quotes == 1 for v in pool_venues.values())


async def test_a_trigger_below_the_limit_falls_back_to_quoting(fakes, journal, active, sink, clock, pool_venues) -> None:
    """The fired state no longer meets a LIMIT's floor (it moved): the venues are asked, as before."""
    now = clock.epoch_ms()
    watcher = TriggerWatcher(fired(now - 20.0, {R: cp_view(140.0)}))
    journal.put(fakes.order(status=S.WAITING, order_type=T.LIMIT, limit_price=145.0, triggered_at=now - 20.0), seq=2)

    final = await workflow(pool_venues, watcher, journal, active, sink, clock).run(OID)

    assert final is not None and final.status is S.CONFIRMED
    assert all(v.quotes == 1 for v in pool_venues.values())
    assert final.execution_price is not None and final.execution_price >= 145.0


# --------------------------------------------------------------------------- dispatch


def test_an_order_popped_while_its_run_is_under_way_is_queued_again_when_it_ends() -> None:
    """The watcher fired it before its arming run was reported done: not dropped, not left to the sweep."""
    p = DispatchPolicy(executors=1, max_concurrent=4, stock_size=4)
    round_ = p.assign(p.admit(p.reserve_slots(64), [("o0", Band.ARM)]), [])
    assert p.admit(p.reserve_slots(64), [("o0", Band.TRIGGERED)]) == []

    assert p.finished(round_.executor, "o0") is Band.TRIGGERED
    assert p.running == set()
    assert p.finished(round_.executor, "o1") is None
