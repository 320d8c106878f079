"""OrderWorkflow for LIMIT/SNIPER orders, cancel and expiry, slippage protection and split routing."""

from __future__ import annotations

import random

import pytest

from engine.bands import Band
from engine.execution import OrderWorkflow
from engine.models import DexQuote, OrderEvent, OrderStatus, OrderType, RouteLeg, RoutingDecision, SwapResult, VenueName
from engine.order_types import band_of
from tests.unit.conftest import FakeSettlement
from tests.unit.test_routing import quote
from venues.simulated import METEORA, RAYDIUM
from venues.simulated.pools import ConstantProductPool

S, T = OrderStatus, OrderType
R, M = RAYDIUM, METEORA
OID = "order_1764000000000_0000abcd"
TRIGGERED_AT = 1_764_000_000_500.0


@pytest.fixture
def venues(fakes):
    """Raydium pays 150 per SOL, Meteora 152 (no pool snapshots: single-venue routes)."""
    return {R: fakes.Venue(R, rate=150.0), M: fakes.Venue(M, rate=152.0)}


@pytest.fixture
def make_workflow(journal, active, sink, clock, watcher):
    def make(venues, **kwargs) -> OrderWorkflow:
        kwargs.setdefault("rng", random.Random(0))
        kwargs.setdefault("watcher", watcher)
        kwargs.setdefault("settlement", FakeSettlement(venues))
        return OrderWorkflow(venues=venues, sink=sink, journal=journal, active=active, clock=clock, **kwargs)

    return make


def statuses(events: list[OrderEvent]) -> list[OrderStatus]:
    return [e.status for e in events]


def venue_calls(venues) -> dict[VenueName, tuple[int, int, int, int]]:
    return {name: (v.quotes, v.snapshots, v.swap_calls, v.find_calls) for name, v in venues.items()}


NO_CALLS = {R: (0, 0, 0, 0), M: (0, 0, 0, 0)}


# --------------------------------------------------------------------------- arming


@pytest.mark.parametrize(
    ("order_type", "fields", "reason"),
    [
        (T.LIMIT, {"limit_price": 155.0}, "waiting for USDC/SOL net price >= 155"),
        (T.SNIPER, {"max_price": 0.01}, "waiting for a pool to buy USDC at <= 0.01 SOL each"),
        (T.SNIPER, {}, "waiting for a pool to buy USDC"),
    ],
    ids=["limit", "sniper-capped", "sniper"],
)
async def test_a_new_limit_or_sniper_order_waits_with_the_watcher(
    fakes, journal, active, sink, watcher, make_workflow, venues, order_type, fields, reason
) -> None:
    journal.put(fakes.order(order_type=order_type, **fields))

    final = await make_workflow(venues).run(OID)

    events = journal.events_for(OID)
    assert statuses(events) == [S.WAITING]
    assert events[0].reason == reason
    assert events[0].seq == 2
    assert final is not None and final.status is S.WAITING
    assert watcher.watched == [final]
    assert watcher.unwatched == []
    assert venue_calls(venues) == NO_CALLS  # waiting costs the venues nothing
    assert journal.triggered_calls == []
    assert sink.events == events
    assert active.calls == [("update", OID, S.WAITING)]  # still active, not finished


async def test_an_order_already_waiting_is_handed_to_the_watcher_again_without_an_event(
    fakes, journal, watcher, make_workflow, venues
) -> None:
    journal.put(fakes.order(status=S.WAITING, order_type=T.LIMIT, limit_price=155.0), seq=2)

    final = await make_workflow(venues).run(OID)

    assert journal.events_for(OID) == []
    assert watcher.watched_ids == [OID]
    assert final is not None and final.status is S.WAITING
    assert venue_calls(venues) == NO_CALLS


# --------------------------------------------------------------------------- triggered


async def test_a_triggered_limit_order_above_its_limit_confirms_with_the_limit_as_minimum(fakes, journal, watcher, make_workflow) -> None:
    """Quotes give 304 USDC for 2 SOL; the limit asks 151.9 each (303.8), tighter than 50 bps of slippage."""
    venues = {R: fakes.Venue(R, rate=150.0), M: fakes.Venue(M, rate=152.0, slippage=1.0)}
    journal.put(fakes.order(status=S.WAITING, order_type=T.LIMIT, limit_price=151.9, triggered_at=TRIGGERED_AT), seq=2)

    final = await make_workflow(venues).run(OID)

    events = journal.events_for(OID)
    assert statuses(events) == [S.ROUTING, S.BUILDING, S.SUBMITTED, S.CONFIRMED]
    decision = events[1].routing_decision
    assert decision is not None
    assert decision.venue is M
    assert decision.min_amount_out >= 151.9 * 2.0
    assert decision.min_amount_out == pytest.approx(151.9 * 2.0)
    assert venues[M].min_amounts == [decision.min_amount_out]  # the swap is told the limit
    assert final is not None and final.status is S.CONFIRMED
    assert final.execution_price is not None and final.execution_price >= 151.9
    assert final.execution_amount == pytest.approx(304.0)
    assert "claim" in journal.calls
    assert watcher.watched == []


async def test_a_triggered_limit_order_with_a_loose_limit_keeps_the_slippage_minimum(fakes, journal, make_workflow, venues) -> None:
    journal.put(fakes.order(status=S.WAITING, order_type=T.LIMIT, limit_price=140.0, triggered_at=TRIGGERED_AT), seq=2)

    final = await make_workflow(venues).run(OID)

    assert final is not None and final.status is S.CONFIRMED
    assert final.routing_decision is not None
    assert final.routing_decision.min_amount_out == pytest.approx(304.0 * 0.995)
    assert venues[M].min_amounts == [pytest.approx(304.0 * 0.995)]


async def test_a_triggered_sniper_order_buys(fakes, journal, make_workflow, venues) -> None:
    journal.put(fakes.order(status=S.WAITING, order_type=T.SNIPER, max_price=1.0, triggered_at=TRIGGERED_AT), seq=2)

    final = await make_workflow(venues).run(OID)

    assert final is not None and final.status is S.CONFIRMED
    assert statuses(journal.events_for(OID)) == [S.ROUTING, S.BUILDING, S.SUBMITTED, S.CONFIRMED]


@pytest.mark.parametrize(
    ("order_type", "fields"),
    [(T.LIMIT, {"limit_price": 155.0}), (T.SNIPER, {"max_price": 1 / 155.0})],
    ids=["limit", "sniper"],
)
async def test_a_triggered_order_whose_price_moved_away_waits_again(
    fakes, journal, watcher, make_workflow, venues, order_type, fields
) -> None:
    journal.put(fakes.order(status=S.WAITING, order_type=order_type, triggered_at=TRIGGERED_AT, **fields), seq=2)

    final = await make_workflow(venues).run(OID)

    events = journal.events_for(OID)
    assert statuses(events) == [S.ROUTING, S.WAITING]
    assert events[1].reason == "price moved away from the limit before execution; waiting again"
    assert journal.triggered_calls == [(OID, None)]  # re-armed
    assert watcher.watched_ids == [OID]
    assert final is not None and final.status is S.WAITING and final.triggered_at is None
    assert sum(v.swap_calls for v in venues.values()) == 0
    assert "claim" not in journal.calls
    # the next load sees it re-armed: it goes back to the watcher, not to the venues
    reloaded = await journal.load(OID)
    assert reloaded is not None and reloaded[0].triggered_at is None
    assert band_of(reloaded[0]) is Band.ARM


# --------------------------------------------------------------------------- cancel and expiry


@pytest.mark.parametrize(
    ("status", "order_type", "seq"),
    [
        (S.PENDING, T.MARKET, 1),
        (S.PENDING, T.LIMIT, 1),
        (S.WAITING, T.LIMIT, 2),
        (S.WAITING, T.SNIPER, 2),
        (S.ROUTING, T.MARKET, 2),
        (S.BUILDING, T.LIMIT, 4),
    ],
)
async def test_a_cancel_request_closes_the_order_and_unwatches_it(
    fakes, journal, active, clock, watcher, make_workflow, venues, status, order_type, seq
) -> None:
    journal.put(fakes.order(status=status, order_type=order_type, limit_price=155.0, cancel_requested=True), seq=seq)

    final = await make_workflow(venues).run(OID)

    events = journal.events_for(OID)
    assert statuses(events) == [S.CANCELLED]
    assert events[0].reason == "cancelled by the client"
    assert events[0].seq == seq + 1
    assert final is not None and final.status is S.CANCELLED
    assert final.cancelled_at == clock.epoch_ms()
    assert watcher.unwatched == [OID]
    assert watcher.watched == []
    assert venue_calls(venues) == NO_CALLS
    assert active.calls[-1] == ("finish", OID, S.CANCELLED)


async def test_a_failing_unwatch_does_not_undo_the_cancel(fakes, journal, make_workflow, venues) -> None:
    journal.put(fakes.order(status=S.WAITING, order_type=T.LIMIT, limit_price=155.0, cancel_requested=True), seq=2)

    final = await make_workflow(venues, watcher=fakes.Watcher(failing=True)).run(OID)

    assert final is not None and final.status is S.CANCELLED
    assert journal.orders[OID].status is S.CANCELLED


@pytest.mark.parametrize("status", [S.PENDING, S.WAITING])
@pytest.mark.parametrize("before_now_ms", [0.0, 1.0, 60_000.0])
@pytest.mark.parametrize("triggered", [False, True])
async def test_an_order_past_its_expiry_expires(
    fakes, journal, active, clock, watcher, make_workflow, venues, status, before_now_ms, triggered
) -> None:
    order = fakes.order(
        status=status,
        order_type=T.LIMIT,
        limit_price=140.0,  # the price is there: expiry still wins
        expires_at=clock.epoch_ms() - before_now_ms,
        triggered_at=TRIGGERED_AT if triggered else None,
    )
    journal.put(order, seq=1 if status is S.PENDING else 2)

    final = await make_workflow(venues).run(OID)

    events = journal.events_for(OID)
    assert statuses(events) == [S.EXPIRED]
    assert events[0].reason == "expired before its condition was met"
    assert final is not None and final.status is S.EXPIRED
    assert final.expired_at == clock.epoch_ms()
    assert watcher.unwatched == [OID]
    assert venue_calls(venues) == NO_CALLS
    assert active.calls[-1] == ("finish", OID, S.EXPIRED)


async def test_an_order_not_yet_expired_waits(fakes, journal, clock, watcher, make_workflow, venues) -> None:
    journal.put(fakes.order(order_type=T.LIMIT, limit_price=155.0, expires_at=clock.epoch_ms() + 1))

    final = await make_workflow(venues).run(OID)

    assert final is not None and final.status is S.WAITING
    assert watcher.watched_ids == [OID]


async def test_a_cancel_racing_the_claim_cancels_without_swapping(fakes, journal, watcher, make_workflow, venues) -> None:
    journal.put(fakes.order())
    journal.cancel_before_claim = True  # the client's cancel lands between routing and the claim

    final = await make_workflow(venues).run(OID)

    events = journal.events_for(OID)
    assert statuses(events) == [S.ROUTING, S.BUILDING, S.CANCELLED]
    assert events[-1].reason == "cancelled by the client"
    assert final is not None and final.status is S.CANCELLED
    assert sum(v.swap_calls for v in venues.values()) == 0
    assert journal.claimed == set()
    assert watcher.unwatched == [OID]


async def test_a_claimed_order_can_no_longer_be_cancelled(fakes, journal, make_workflow, venues) -> None:
    journal.put(fakes.order())

    final = await make_workflow(venues).run(OID)

    assert final is not None and final.status is S.CONFIRMED
    assert journal.claimed == {OID}
    assert journal.request_cancel(OID) is False
    claim = journal.calls.index("claim")
    # routing is written, then building with the claim; submitted and confirmed come after it
    assert journal.calls[:claim].count("record") == 2
    assert journal.calls[claim + 1 :].count("record") == 2


# --------------------------------------------------------------------------- slippage protection


async def test_slippage_then_a_re_quote_below_the_first_minimum_fails_after_one_swap(fakes, journal, make_workflow) -> None:
    """Meteora quotes 304 (minimum 302.48); its swap would slip, and the price falls to 140 (re-quote 300 at Raydium)."""
    venues = {R: fakes.Venue(R, rate=150.0), M: fakes.Venue(M, rate=152.0, slippage_fails=1, rate_after_slippage=140.0)}
    journal.put(fakes.order())

    final = await make_workflow(venues).run(OID)

    events = journal.events_for(OID)
    assert statuses(events) == [S.ROUTING, S.BUILDING, S.SUBMITTED, S.ROUTING, S.FAILED]
    assert events[3].attempt == 2
    assert events[3].error is not None and "slippage exceeded" in events[3].error and "re-quoting once" in events[3].error
    assert final is not None and final.status is S.FAILED
    assert final.failure_reason is not None and final.failure_reason.startswith("slippage exceeded")
    assert "302.48" in final.failure_reason
    assert sum(v.swap_calls for v in venues.values()) == 1  # only one swap attempt
    assert sum(v.swaps for v in venues.values()) == 0
    assert venues[M].min_amounts == [pytest.approx(304.0 * 0.995)]


async def test_slippage_then_a_re_quote_meeting_the_first_minimum_confirms(fakes, journal, make_workflow) -> None:
    venues = {R: fakes.Venue(R, rate=150.0), M: fakes.Venue(M, rate=152.0, slippage_fails=1)}
    journal.put(fakes.order())

    final = await make_workflow(venues).run(OID)

    events = journal.events_for(OID)
    assert statuses(events) == [S.ROUTING, S.BUILDING, S.SUBMITTED, S.ROUTING, S.BUILDING, S.SUBMITTED, S.CONFIRMED]
    assert final is not None and final.status is S.CONFIRMED
    assert final.attempts == 2
    assert venues[M].swap_calls == 2 and venues[M].swaps == 1
    first_minimum = 304.0 * 0.995
    assert all(m >= first_minimum - 1e-9 for m in venues[M].min_amounts)
    assert final.routing_decision is not None and final.routing_decision.min_amount_out >= first_minimum - 1e-9


async def test_the_re_quote_may_go_elsewhere_if_it_still_meets_the_first_minimum(fakes, journal, make_workflow) -> None:
    """Meteora slips and drops to 140; Raydium's 303 still meets the first minimum (302.48): it fills there."""
    venues = {R: fakes.Venue(R, rate=151.5), M: fakes.Venue(M, rate=152.0, slippage_fails=1, rate_after_slippage=140.0)}
    journal.put(fakes.order())

    final = await make_workflow(venues).run(OID)

    assert final is not None and final.status is S.CONFIRMED
    assert final.tx_hash == "tx-raydium-1"
    assert venues[R].min_amounts == [pytest.approx(304.0 * 0.995)]  # the first minimum, not the re-quote's own


async def test_a_second_slippage_miss_fails(fakes, journal, make_workflow) -> None:
    venues = {R: fakes.Venue(R, rate=150.0), M: fakes.Venue(M, rate=152.0, slippage_fails=2)}
    journal.put(fakes.order())

    final = await make_workflow(venues).run(OID)

    assert statuses(journal.events_for(OID))[-1] is S.FAILED
    assert final is not None and final.failure_reason is not None and "slippage exceeded" in final.failure_reason
    assert venues[M].swap_calls == 2 and venues[M].swaps == 0


async def test_a_limit_order_whose_swap_slips_below_the_limit_fails_rather_than_filling_below_it(fakes, journal, make_workflow) -> None:
    venues = {R: fakes.Venue(R, rate=150.0), M: fakes.Venue(M, rate=152.0, slippage=0.99)}
    journal.put(fakes.order(status=S.WAITING, order_type=T.LIMIT, limit_price=151.0, triggered_at=TRIGGERED_AT), seq=2)

    final = await make_workflow(venues).run(OID)

    assert final is not None and final.status is S.FAILED
    assert sum(v.swaps for v in venues.values()) == 0
    assert all(m >= 302.0 for v in venues.values() for m in v.min_amounts)


# --------------------------------------------------------------------------- split routing


def pools() -> dict[VenueName, ConstantProductPool]:
    """Two shallow SOL/USDC pools: 200 SOL moves either a lot, so half each gives more."""
    return {
        R: ConstantProductPool(reserve_x=1_000.0, reserve_y=150_000.0),
        M: ConstantProductPool(reserve_x=1_000.0, reserve_y=152_000.0),
    }


@pytest.fixture
def pool_venues(fakes):
    return {name: fakes.Venue(name, pool=pool) for name, pool in pools().items()}


async def test_a_split_decision_swaps_both_legs_and_confirms_with_both(fakes, journal, make_workflow, pool_venues) -> None:
    journal.put(fakes.order(amount=200.0))

    final = await make_workflow(pool_venues).run(OID)

    events = journal.events_for(OID)
    assert statuses(events) == [S.ROUTING, S.BUILDING, S.SUBMITTED, S.CONFIRMED]
    decision = events[1].routing_decision
    assert decision is not None
    assert [leg.venue for leg in decision.legs] == [M, R]  # the larger leg first
    assert "split" in decision.reason
    assert all(v.swap_calls == 1 and v.swaps == 1 for v in pool_venues.values())
    for leg in decision.legs:
        (sent,) = pool_venues[leg.venue].swap_quotes
        assert (sent.amount_in, sent.amount_out) == (leg.amount_in, leg.amount_out)
        (minimum,) = pool_venues[leg.venue].min_amounts
        assert minimum == pytest.approx(leg.amount_out * decision.min_amount_out / decision.amount_out)
    legs_out = {name: v.ledger[OID].amount_out for name, v in pool_venues.items()}
    confirmed = events[-1]
    assert confirmed.tx_hash == "tx-meteora-1"
    assert confirmed.tx_hashes == ["tx-meteora-1", "tx-raydium-1"]
    assert confirmed.execution_amount == pytest.approx(sum(legs_out.values()))
    assert confirmed.execution_price == pytest.approx(sum(legs_out.values()) / 200.0)
    assert final is not None and final.tx_hashes == confirmed.tx_hashes
    single = max(v.pool.fill(200.0, x_to_y=True).amount_out for v in pool_venues.values() if v.pool is not None)
    assert decision.amount_out > single


async def test_without_split_routing_no_snapshot_is_taken(fakes, journal, make_workflow, pool_venues) -> None:
    journal.put(fakes.order(amount=200.0))

    final = await make_workflow(pool_venues, split_routing=False).run(OID)

    assert final is not None and final.status is S.CONFIRMED
    assert all(v.snapshots == 0 for v in pool_venues.values())
    assert final.tx_hashes == ["tx-meteora-1"]
    assert final.routing_decision is not None and len(final.routing_decision.legs) == 1


def dex_quote(venue: VenueName, amount_in: float, amount_out: float) -> DexQuote:
    return quote(venue, amount_out, impact=1.0, amount_in=amount_in)


def split_decision() -> RoutingDecision:
    """60% Raydium (1.2 SOL -> 180 USDC), 40% Meteora (0.8 SOL -> 121.6 USDC); minimum 300 of 301.6."""
    return RoutingDecision(
        venue=R,
        reason="split 60.0% raydium / 40.0% meteora",
        quotes=[dex_quote(M, 2.0, 300.0), dex_quote(R, 2.0, 299.0)],
        legs=[
            RouteLeg(venue=R, amount_in=1.2, amount_out=180.0, percent=60.0),
            RouteLeg(venue=M, amount_in=0.8, amount_out=121.6, percent=40.0),
        ],
        amount_out=301.6,
        min_amount_out=300.0,
    )


@pytest.mark.parametrize("found_at", [R, M])
async def test_a_resumed_split_order_swaps_only_the_missing_leg(fakes, journal, make_workflow, venues, found_at) -> None:
    decision = split_decision()
    legs = {leg.venue: leg for leg in decision.legs}
    landed = SwapResult(
        venue=found_at,
        order_id=OID,
        tx_hash="5eXiStInGtXhAsH",
        amount_in=legs[found_at].amount_in,
        amount_out=legs[found_at].amount_out * 0.998,
        execution_price=legs[found_at].amount_out * 0.998 / legs[found_at].amount_in,
        executed_at=1_763_999_999_000.0,
    )
    venues[found_at].ledger[OID] = landed
    missing = M if found_at is R else R
    journal.put(fakes.order(status=S.SUBMITTED, attempts=1, routing_decision=decision), seq=4)

    final = await make_workflow(venues).run(OID)

    events = journal.events_for(OID)
    assert statuses(events) == [S.CONFIRMED]  # SUBMITTED -> CONFIRMED: nothing re-routed
    assert venues[found_at].swap_calls == 0
    assert venues[missing].swap_calls == 1
    (sent,) = venues[missing].swap_quotes
    assert (sent.venue, sent.amount_in, sent.amount_out) == (missing, legs[missing].amount_in, legs[missing].amount_out)
    assert venues[missing].min_amounts == [pytest.approx(legs[missing].amount_out * 300.0 / 301.6)]
    assert venues[R].quotes == venues[M].quotes == 0
    swapped = venues[missing].ledger[OID]
    assert final is not None and final.status is S.CONFIRMED
    assert set(final.tx_hashes or []) == {"5eXiStInGtXhAsH", swapped.tx_hash}
    assert final.tx_hash == ("5eXiStInGtXhAsH" if found_at is R else swapped.tx_hash)  # the larger leg's
    assert final.execution_amount == pytest.approx(landed.amount_out + swapped.amount_out)
    assert final.execution_price == pytest.approx((landed.amount_out + swapped.amount_out) / 2.0)


async def test_a_resumed_split_order_with_both_legs_landed_swaps_nothing(fakes, journal, make_workflow, venues) -> None:
    decision = split_decision()
    for leg in decision.legs:
        venues[leg.venue].ledger[OID] = SwapResult(
            venue=leg.venue,
            order_id=OID,
            tx_hash=f"landed-{leg.venue}",
            amount_in=leg.amount_in,
            amount_out=leg.amount_out,
            execution_price=leg.amount_out / leg.amount_in,
            executed_at=1_763_999_999_000.0,
        )
    journal.put(fakes.order(status=S.SUBMITTED, attempts=1, routing_decision=decision), seq=4)

    final = await make_workflow(venues).run(OID)

    assert sum(v.swap_calls for v in venues.values()) == 0
    assert final is not None and final.tx_hashes == ["landed-raydium", "landed-meteora"]
    assert final.execution_amount == pytest.approx(301.6)


@pytest.mark.parametrize(
    "failing_leg",
    [
        {"slippage_fails": 2},  # the leg slips, and slips again when the missing leg is retried
        {"fail_swaps": 99},  # the leg's venue keeps timing out
    ],
    ids=["slippage", "transient"],
)
async def test_a_split_order_that_fails_after_one_leg_landed_records_the_landed_swap(
    fakes, journal, make_workflow, pool_venues, failing_leg
) -> None:
    """Money moved at Raydium: whatever the order ends as, it must say so (its tx hash is on the order).

    This is the invariant tests/reliability checks as ``failed_with_swap``, and why
    ``Order.apply`` keeps ``tx_hashes`` on a FAILED event.
    """
    for key, value in failing_leg.items():
        setattr(pool_venues[M], key, value)
    journal.put(fakes.order(amount=200.0))

    final = await make_workflow(pool_venues).run(OID)

    landed = pool_venues[R].ledger[OID]
    assert OID not in pool_venues[M].ledger
    assert pool_venues[R].swaps == 1  # the landed leg was never swapped twice
    assert final is not None and final.status in (S.FAILED, S.CONFIRMED)
    assert final.tx_hashes is not None and landed.tx_hash in final.tx_hashes, (
        f"order ended {final.status.value} ({final.failure_reason!r}) without the tx hash of the leg that landed"
    )
    assert journal.events_for(OID)[-1].tx_hashes == final.tx_hashes
