"""OrderWorkflow against in-memory fakes: the happy path, retries, resume, and store outages."""

from __future__ import annotations

import asyncio
import random

import pytest

from engine.errors import InvalidTransition, NoPoolError
from engine.execution import OrderRun, OrderWorkflow
from engine.models import Order, OrderEvent, OrderStatus, SwapResult, VenueName
from engine.retry import RetryPolicy
from tests.unit.conftest import FakeSettlement
from venues.simulated import METEORA, RAYDIUM

S = OrderStatus
R, M = RAYDIUM, METEORA
OID = "order_1764000000000_0000abcd"


@pytest.fixture
def venues(fakes):
    """Raydium pays 150 per SOL, Meteora 152: Meteora is the better route."""
    return {R: fakes.Venue(R, rate=150.0), M: fakes.Venue(M, rate=152.0)}


@pytest.fixture
def make_workflow(journal, active, sink, clock):
    def make(venues, **kwargs) -> OrderWorkflow:
        kwargs.setdefault("rng", random.Random(0))
        kwargs.setdefault("settlement", FakeSettlement(venues))
        return OrderWorkflow(venues=venues, sink=sink, journal=journal, active=active, clock=clock, **kwargs)

    return make


def statuses(events: list[OrderEvent]) -> list[OrderStatus]:
    return [e.status for e in events]


# --------------------------------------------------------------------------- happy path


@pytest.mark.parametrize(("better", "rates"), [(M, {R: 150.0, M: 152.0}), (R, {R: 153.0, M: 149.0})])
async def test_happy_path_routes_to_the_better_venue_and_confirms(
    fakes, journal, active, sink, clock, make_workflow, better, rates
) -> None:
    venues = {name: fakes.Venue(name, rate=rate) for name, rate in rates.items()}
    journal.put(fakes.order(amount=2.0))

    final = await make_workflow(venues).run(OID)

    events = journal.events_for(OID)
    assert statuses(events) == [S.ROUTING, S.BUILDING, S.SUBMITTED, S.CONFIRMED]
    assert [e.seq for e in events] == [2, 3, 4, 5]
    routing, building, submitted, confirmed = events
    assert routing.attempt == 1
    assert routing.error is None
    assert building.routing_decision is not None
    assert building.routing_decision.venue is better
    assert building.routing_decision.decided_at == clock.epoch_ms()  # the workflow's clock, not the wall's
    # submitted and confirmed repeat the decision for the stream (the seed's clients read it there)
    assert submitted.routing_decision == confirmed.routing_decision == building.routing_decision
    assert better in building.routing_decision.reason
    assert {q.venue for q in building.routing_decision.quotes} == {R, M}
    swap = venues[better].ledger[OID]
    assert confirmed.tx_hash == swap.tx_hash == f"tx-{better}-1"
    assert confirmed.execution_price == swap.execution_price
    assert confirmed.execution_amount == swap.amount_out == pytest.approx(2.0 * rates[better] * 0.999)
    assert venues[better].swaps == 1
    assert sum(v.swap_calls for v in venues.values()) == 1
    # the returned and the stored order agree
    assert final is not None
    assert final.status is S.CONFIRMED
    assert journal.orders[OID] == final
    assert final.attempts == 1
    assert final.tx_hash == swap.tx_hash
    assert final.executed_at == clock.epoch_ms()
    # live stream saw the same events, the hot copy was finished
    assert sink.events == events
    assert active.calls[-1] == ("finish", OID, S.CONFIRMED)
    assert OID not in active.active
    assert clock.slept == []


async def test_venues_are_quoted_concurrently(fakes, journal, make_workflow) -> None:
    in_flight = fakes.InFlight()
    venues = {R: fakes.Venue(R, in_flight=in_flight), M: fakes.Venue(M, rate=151.0, in_flight=in_flight)}
    journal.put(fakes.order())

    await make_workflow(venues).run(OID)

    assert in_flight.peak == 2
    assert venues[R].quotes == venues[M].quotes == 1


async def test_events_are_published_before_they_are_persisted_but_the_terminal_one_after(fakes, journal, active, clock, venues) -> None:
    journal.put(fakes.order())
    seen_at_publish: list[tuple[int, int]] = []

    class CheckingSink:
        async def publish(self, event: OrderEvent, epoch: int | None = None) -> None:
            seen_at_publish.append((event.seq, len(journal.events_for(OID))))

    await OrderWorkflow(
        venues=venues, sink=CheckingSink(), journal=journal, active=active, clock=clock, settlement=FakeSettlement(venues)
    ).run(OID)

    # the terminal event (seq 5) is stored first: no reader sees a terminal state the journal could refuse
    assert seen_at_publish == [(2, 0), (3, 1), (4, 2), (5, 4)]


# --------------------------------------------------------------------------- retries


async def test_transient_quote_failures_retry_with_back_off(fakes, journal, clock, make_workflow) -> None:
    venues = {R: fakes.Venue(R, fail_quotes=2), M: fakes.Venue(M, rate=151.0, fail_quotes=2)}
    journal.put(fakes.order())

    final = await make_workflow(venues).run(OID)

    events = journal.events_for(OID)
    assert statuses(events) == [S.ROUTING, S.ROUTING, S.ROUTING, S.BUILDING, S.SUBMITTED, S.CONFIRMED]
    assert [e.attempt for e in events[:3]] == [1, 2, 3]
    assert events[0].error is None
    for retry in events[1:3]:
        assert retry.error is not None
        assert "no usable quote" in retry.error
        assert "quote timed out" in retry.error
    policy = RetryPolicy()
    assert clock.slept == [policy.delay_after(1), policy.delay_after(2)] == [0.5, 1.0]
    assert final is not None
    assert final.status is S.CONFIRMED
    assert final.attempts == 3


async def test_back_off_uses_the_policy_and_its_jitter(fakes, journal, clock, make_workflow) -> None:
    venues = {R: fakes.Venue(R, fail_quotes=3), M: fakes.Venue(M, fail_quotes=3)}
    journal.put(fakes.order())
    policy = RetryPolicy(max_attempts=5, base_delay_s=0.25, max_delay_s=1.0, jitter=0.2)

    await make_workflow(venues, retry=policy, rng=random.Random(3)).run(OID)

    twin = random.Random(3)
    assert clock.slept == [policy.delay_after(n, twin) for n in (1, 2, 3)]
    assert clock.slept != [0.25, 0.5, 1.0]  # the jitter was applied


async def test_fails_after_max_attempts_with_the_reason_persisted(fakes, journal, active, clock, make_workflow) -> None:
    venues = {R: fakes.Venue(R, fail_quotes=99), M: fakes.Venue(M, fail_quotes=99)}
    journal.put(fakes.order())

    final = await make_workflow(venues).run(OID)

    events = journal.events_for(OID)
    assert statuses(events) == [S.ROUTING, S.ROUTING, S.ROUTING, S.FAILED]
    assert [e.attempt for e in events[:3]] == [1, 2, 3]
    assert clock.slept == [0.5, 1.0]
    stored = journal.orders[OID]
    assert stored.status is S.FAILED
    assert stored.failure_reason is not None
    assert stored.failure_reason.startswith("no usable quote")
    assert stored.failure_reason.endswith("(after 3 attempts)")
    assert events[-1].failure_reason == stored.failure_reason
    assert stored.failed_at == clock.epoch_ms()
    assert final == stored
    assert venues[R].quotes == venues[M].quotes == 3
    assert venues[R].swap_calls == venues[M].swap_calls == 0
    assert active.calls[-1] == ("finish", OID, S.FAILED)
    assert active.active == set()


async def test_permanent_failure_is_not_retried(fakes, journal, clock, make_workflow) -> None:
    venues = {name: fakes.Venue(name, fail_quotes=99, quote_error=NoPoolError) for name in (R, M)}
    journal.put(fakes.order())

    final = await make_workflow(venues).run(OID)

    assert statuses(journal.events_for(OID)) == [S.ROUTING, S.FAILED]
    assert final is not None
    assert final.failure_reason is not None
    assert "(after" not in final.failure_reason
    assert "meteora: quote timed out" in final.failure_reason
    assert clock.slept == []


async def test_a_swap_that_never_landed_is_resubmitted(fakes, journal, clock, make_workflow) -> None:
    venues = {R: fakes.Venue(R), M: fakes.Venue(M, rate=152.0, fail_swaps=1)}
    journal.put(fakes.order())

    final = await make_workflow(venues).run(OID)

    events = journal.events_for(OID)
    assert statuses(events) == [S.ROUTING, S.BUILDING, S.SUBMITTED, S.ROUTING, S.BUILDING, S.SUBMITTED, S.CONFIRMED]
    assert events[3].attempt == 2
    assert events[3].error == "meteora: transaction send timed out (scripted)"
    assert venues[M].swap_calls == 2
    assert venues[M].swaps == 1
    assert venues[M].find_calls == 1  # a retry asks before resubmitting
    assert final is not None
    assert final.tx_hash == "tx-meteora-1"
    assert clock.slept == [0.5]


async def test_a_swap_whose_confirmation_was_lost_is_adopted_on_retry(fakes, journal, make_workflow) -> None:
    venues = {R: fakes.Venue(R), M: fakes.Venue(M, rate=152.0, fail_swaps=1, swap_lands_then_fails=True)}
    journal.put(fakes.order())

    final = await make_workflow(venues).run(OID)

    assert venues[M].swap_calls == 1  # no second swap
    assert venues[M].swaps == 1
    assert final is not None
    assert final.status is S.CONFIRMED
    assert final.tx_hash == venues[M].ledger[OID].tx_hash
    assert final.execution_amount == venues[M].ledger[OID].amount_out


# --------------------------------------------------------------------------- resume


def existing_swap(venue: VenueName) -> SwapResult:
    return SwapResult(
        venue=venue,
        order_id=OID,
        tx_hash="5eXiStInGtXhAsH",
        amount_in=2.0,
        amount_out=299.0,
        execution_price=149.5,
        executed_at=1_763_999_999_000.0,
    )


@pytest.mark.parametrize("swapped_at", [R, M])
async def test_resumed_submitted_order_adopts_the_swap_found_at_a_venue(fakes, journal, make_workflow, venues, swapped_at) -> None:
    venues[swapped_at].ledger[OID] = existing_swap(swapped_at)
    journal.put(fakes.order(status=S.SUBMITTED, attempts=1), seq=4)

    final = await make_workflow(venues).run(OID)

    events = journal.events_for(OID)
    assert statuses(events) == [S.CONFIRMED]  # SUBMITTED -> CONFIRMED directly: nothing is re-routed
    assert [e.seq for e in events] == [5]
    assert venues[R].swap_calls == venues[M].swap_calls == 0
    assert final is not None
    assert final.status is S.CONFIRMED
    assert (final.tx_hash, final.execution_price, final.execution_amount) == ("5eXiStInGtXhAsH", 149.5, 299.0)


async def test_resumed_order_without_a_swap_swaps_once(fakes, journal, make_workflow, venues) -> None:
    journal.put(fakes.order(status=S.BUILDING, attempts=1), seq=3)

    final = await make_workflow(venues).run(OID)

    assert venues[M].find_calls == venues[R].find_calls == 1
    assert venues[M].swaps == 1
    assert venues[R].swap_calls == 0
    assert final is not None
    assert final.tx_hash == "tx-meteora-1"


async def test_resumed_order_whose_swap_landed_is_not_failed_when_requotes_fail(fakes, journal, make_workflow) -> None:
    """A swap already at the venue must not be reported as a failed order.

    A resumed order looks for its swap at the venues before it re-routes, so failing
    re-quotes cannot turn a landed swap into a FAILED order.
    """
    venues = {R: fakes.Venue(R, fail_quotes=99), M: fakes.Venue(M, fail_quotes=99)}
    venues[R].ledger[OID] = existing_swap(R)
    journal.put(fakes.order(status=S.SUBMITTED, attempts=1), seq=4)

    final = await make_workflow(venues).run(OID)

    assert final is not None
    assert final.status is S.CONFIRMED, f"order {final.status} with failure_reason={final.failure_reason!r}, but swap {R} landed"
    assert final.tx_hash == "5eXiStInGtXhAsH"


@pytest.mark.parametrize("status", [S.CONFIRMED, S.FAILED])
async def test_terminal_order_returns_immediately_after_repairing_redis(
    fakes, journal, sink, active, clock, make_workflow, venues, status
) -> None:
    order = fakes.order(status=status, attempts=2)
    journal.put(order, seq=6)

    final = await make_workflow(venues).run(OID)

    assert final == order
    assert journal.events == []
    assert sink.events == []
    assert active.calls == [("finish", OID, status)]  # repairs a stale hot copy, nothing more
    assert venues[R].quotes == venues[M].quotes == 0
    assert clock.slept == []


async def test_unknown_order_returns_none(journal, sink, make_workflow, venues) -> None:
    assert await make_workflow(venues).run("order_1764000000000_ffffffff") is None
    assert journal.events == []
    assert sink.events == []
    assert venues[R].quotes == 0


# --------------------------------------------------------------------------- store and stream outages


@pytest.mark.parametrize(("times", "on"), [(3, ("load",)), (3, ("record",)), (2, ("load", "record"))])
async def test_journal_outages_are_waited_out(fakes, journal, clock, make_workflow, venues, times, on) -> None:
    journal.put(fakes.order())
    journal.fail(times, on=on)

    final = await make_workflow(venues).run(OID)

    assert journal.raised == times
    assert final is not None
    assert final.status is S.CONFIRMED
    events = journal.events_for(OID)
    assert [e.seq for e in events] == [2, 3, 4, 5]  # nothing lost, nothing doubled
    store = RetryPolicy(base_delay_s=0.2, max_delay_s=5.0)
    assert clock.slept == [store.delay_after(n) for n in range(1, times + 1)]


async def test_a_long_journal_outage_backs_off_up_to_the_cap(fakes, journal, clock, make_workflow, venues) -> None:
    journal.put(fakes.order())
    journal.fail(9, on=("record",))

    final = await make_workflow(venues).run(OID)

    assert final is not None
    assert final.status is S.CONFIRMED
    assert clock.slept == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0])


async def test_events_are_published_once_even_when_persisting_retries(fakes, journal, sink, make_workflow, venues) -> None:
    journal.put(fakes.order())
    journal.fail(4, on=("record",))

    await make_workflow(venues).run(OID)

    assert [e.seq for e in sink.events] == [2, 3, 4, 5]


async def test_publish_failures_do_not_stop_the_order(fakes, journal, active, clock, venues) -> None:
    sink = fakes.Sink(failing=True)
    journal.put(fakes.order())

    final = await OrderWorkflow(
        venues=venues, sink=sink, journal=journal, active=active, clock=clock, settlement=FakeSettlement(venues)
    ).run(OID)

    assert sink.attempts == 4
    assert final is not None
    assert final.status is S.CONFIRMED
    assert statuses(journal.events_for(OID)) == [S.ROUTING, S.BUILDING, S.SUBMITTED, S.CONFIRMED]


async def test_active_store_failures_do_not_stop_the_order(fakes, journal, sink, clock, venues) -> None:
    active = fakes.Active(failing=True)
    journal.put(fakes.order())

    final = await OrderWorkflow(
        venues=venues, sink=sink, journal=journal, active=active, clock=clock, settlement=FakeSettlement(venues)
    ).run(OID)

    assert final is not None
    assert final.status is S.CONFIRMED
    assert [c[0] for c in active.calls] == ["update"] * 3 + ["finish"]  # the terminal state goes with the finish


# --------------------------------------------------------------------------- OrderRun


async def test_order_run_refuses_an_illegal_transition_before_any_side_effect(fakes, journal, active, sink, clock) -> None:
    order: Order = fakes.order(status=S.CONFIRMED)
    run = OrderRun(order, 5, sink, journal, active, clock, RetryPolicy())

    with pytest.raises(InvalidTransition, match=r"^CONFIRMED -> ROUTING$"):
        await run.emit(S.ROUTING, attempt=3)

    assert sink.events == []
    assert journal.events == []
    assert active.calls == []
    assert run.seq == 5


class GatedJournal:
    """Wraps the fake journal: each ``record`` waits for ``gate``, so writes can be held in flight."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.gate = asyncio.Event()

    async def record(self, order, events, claim=False, epoch=None):
        await self.gate.wait()
        return await self.inner.record(order, events, claim)

    def __getattr__(self, name):
        return getattr(self.inner, name)


async def test_events_emitted_while_a_write_is_in_flight_go_together_in_the_next(fakes, journal, active, sink, clock) -> None:
    gated = GatedJournal(journal)
    run = OrderRun(fakes.order(), 1, sink, gated, active, clock, RetryPolicy())

    await run.emit(S.ROUTING, attempt=1)
    await asyncio.sleep(0)  # the first write is under way (held at the gate) with routing alone
    await run.emit(S.BUILDING)
    await run.emit(S.SUBMITTED)
    gated.gate.set()
    await run.settled()

    assert journal.writes == [[S.ROUTING], [S.BUILDING, S.SUBMITTED]]
    assert statuses(journal.events) == [S.ROUTING, S.BUILDING, S.SUBMITTED]
    assert journal.orders[OID].status is S.SUBMITTED and journal.seqs[OID] == 4
    assert [status for _, _, status in active.calls] == [S.ROUTING, S.SUBMITTED]  # one hot-copy write per journal write
    assert statuses(sink.events) == [S.ROUTING, S.BUILDING, S.SUBMITTED]


async def test_several_events_before_the_first_write_starts_are_one_write_with_the_last_state(fakes, journal, active, sink, clock) -> None:
    gated = GatedJournal(journal)
    gated.gate.set()
    run = OrderRun(fakes.order(), 1, sink, gated, active, clock, RetryPolicy())

    for status in (S.ROUTING, S.BUILDING, S.SUBMITTED):  # no venue latency between them
        await run.emit(status, attempt=1) if status is S.ROUTING else await run.emit(status)
    await run.settled()

    assert journal.writes == [[S.ROUTING, S.BUILDING, S.SUBMITTED]]
    assert [e.seq for e in journal.events] == [2, 3, 4]
    assert journal.orders[OID].status is S.SUBMITTED
    assert statuses(sink.events) == [S.ROUTING, S.BUILDING, S.SUBMITTED]  # every event still streamed, in order


async def test_a_claiming_event_waits_for_its_own_write_and_learns_the_claim(fakes, journal, active, sink, clock) -> None:
    gated = GatedJournal(journal)
    run = OrderRun(fakes.order(), 1, sink, gated, active, clock, RetryPolicy())
    await run.emit(S.ROUTING, attempt=1)
    await asyncio.sleep(0)

    claim = asyncio.create_task(run.emit_claiming(S.BUILDING))
    await asyncio.sleep(0)
    assert not claim.done()  # routing's write is still in flight; building goes in the next
    gated.gate.set()

    assert await claim is True
    assert journal.writes == [[S.ROUTING], [S.BUILDING]]
    assert journal.claimed == {OID}


async def test_a_cancel_flagged_before_the_claiming_write_refuses_the_claim(fakes, journal, active, sink, clock) -> None:
    run = OrderRun(fakes.order(), 1, sink, journal, active, clock, RetryPolicy())
    await run.emit(S.ROUTING, attempt=1)
    assert journal.request_cancel(OID)

    assert await run.emit_claiming(S.BUILDING) is False
    assert journal.claimed == set()
