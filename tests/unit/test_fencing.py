"""OrderRun fencing against in-memory fakes: a run another run replaced can neither write, swap nor
publish; a plain journal leaves runs unfenced."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from engine.errors import StaleRun
from engine.execution import OrderRun, OrderWorkflow
from engine.models import DexQuote, Order, OrderEvent, OrderStatus, SwapResult
from engine.ports import FencedJournal
from engine.retry import RetryPolicy
from tests.unit.conftest import FakeJournal
from venues.simulated import METEORA, RAYDIUM

S = OrderStatus
OID = "order_1764000000000_0000abcd"


@dataclass(frozen=True)
class Claimed:
    order: Order
    seq: int
    epoch: int


class FencedFakeJournal(FakeJournal):
    """The fake journal with run epochs: ``claim_run`` increments the order's epoch, and a write
    carrying an older epoch is refused with :class:`StaleRun`, as PostgreSQL's conditional UPDATE does."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: dict[str, int] = {}
        self.refused = 0

    async def claim_run(self, order_id: str) -> Claimed | None:
        loaded = await self.load(order_id)
        if loaded is None:
            return None
        self.epochs[order_id] = self.epochs.get(order_id, 0) + 1
        return Claimed(loaded[0], loaded[1], self.epochs[order_id])

    async def assert_current(self, order_id: str, epoch: int) -> bool:
        return self.epochs.get(order_id, 0) == epoch

    async def record(self, order: Order, events: Sequence[OrderEvent], claim: bool = False, epoch: int | None = None) -> bool:
        if epoch is not None and epoch != self.epochs.get(order.order_id, 0):
            self.refused += 1
            raise StaleRun(order.order_id, epoch)
        return await super().record(order, events, claim)

    async def set_triggered(self, order_id: str, at_ms: float | None, epoch: int | None = None) -> None:
        if epoch is not None and epoch != self.epochs.get(order_id, 0):
            raise StaleRun(order_id, epoch)
        await super().set_triggered(order_id, at_ms)


class ClaimingVenue:
    """Wraps a venue: its first quote lets another run claim the order (a redispatch while this run
    is still working, as when Ray reports its executor lost)."""

    def __init__(self, inner, journal: FencedFakeJournal) -> None:
        self.inner = inner
        self.journal = journal
        self.name = inner.name
        self.claimed = False

    async def quote(self, token_in: str, token_out: str, amount: float) -> DexQuote:
        if not self.claimed:
            self.claimed = True
            await self.journal.claim_run(OID)
        result: DexQuote = await self.inner.quote(token_in, token_out, amount)
        return result

    async def swap(self, order_id: str, quote: DexQuote, min_amount_out: float = 0.0) -> SwapResult:
        result: SwapResult = await self.inner.swap(order_id, quote, min_amount_out)
        return result

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


@pytest.fixture
def fenced() -> FencedFakeJournal:
    return FencedFakeJournal()


def test_the_fake_is_a_fenced_journal_and_the_plain_one_is_not(fenced: FencedFakeJournal) -> None:
    assert isinstance(fenced, FencedJournal)
    assert not isinstance(FakeJournal(), FencedJournal)


async def test_a_run_claims_an_epoch_and_writes_with_it(fakes, fenced, active, sink, clock) -> None:
    fenced.put(fakes.order())
    venues = {RAYDIUM: fakes.Venue(RAYDIUM, rate=150.0), METEORA: fakes.Venue(METEORA, rate=152.0)}
    order = await OrderWorkflow(
        venues=venues, sink=sink, journal=fenced, active=active, clock=clock, settlement=fakes.Settlement(venues)
    ).run(OID)
    assert order is not None and order.status is S.CONFIRMED
    assert fenced.epochs[OID] == 1 and fenced.refused == 0
    assert [e.status for e in fenced.events_for(OID)] == [S.ROUTING, S.BUILDING, S.SUBMITTED, S.CONFIRMED]


async def test_a_replaced_run_never_swaps_and_stops_quietly(fakes, fenced, active, sink, clock) -> None:
    fenced.put(fakes.order())
    raydium, meteora = fakes.Venue(RAYDIUM, rate=150.0), fakes.Venue(METEORA, rate=152.0)
    venues = {RAYDIUM: ClaimingVenue(raydium, fenced), METEORA: meteora}
    workflow = OrderWorkflow(venues=venues, sink=sink, journal=fenced, active=active, clock=clock, settlement=fakes.Settlement(venues))
    with pytest.raises(StaleRun):
        await workflow.run(OID)
    assert raydium.swap_calls == 0 and meteora.swap_calls == 0  # the building write was refused: no swap
    assert S.BUILDING not in [e.status for e in fenced.events_for(OID)]
    assert S.SUBMITTED not in [e.status for e in sink.events]  # nothing after the refusal is published
    assert fenced.refused >= 1


async def test_a_run_replaced_after_its_decision_signs_nothing(fakes, fenced, active, sink, clock) -> None:
    """Another run claims the order between the durable decision and the signature: the settlement asks
    ``may_sign`` right before signing, so nothing is signed or swapped and the run stops as stale."""
    fenced.put(fakes.order())
    raydium, meteora = fakes.Venue(RAYDIUM, rate=150.0), fakes.Venue(METEORA, rate=152.0)
    venues = {RAYDIUM: raydium, METEORA: meteora}
    inner = fakes.Settlement(venues)

    class ClaimedBeforeSigning:
        one_transaction = False
        checkpoint = inner.checkpoint

        async def landed(self, order_id: str):
            return await inner.landed(order_id)

        async def settle(self, order_id, account, legs, may_sign, epoch=None):
            await fenced.claim_run(order_id)  # a redispatch while this run is about to sign
            return await inner.settle(order_id, account, legs, may_sign, epoch)

    workflow = OrderWorkflow(venues=venues, sink=sink, journal=fenced, active=active, clock=clock, settlement=ClaimedBeforeSigning())
    with pytest.raises(StaleRun):
        await workflow.run(OID)
    assert raydium.swap_calls == 0 and meteora.swap_calls == 0
    assert S.CONFIRMED not in [e.status for e in fenced.events_for(OID)]


async def test_may_sign_asks_the_journal_and_a_stale_run_emits_nothing(fakes, fenced, active, sink, clock) -> None:
    fenced.put(fakes.order())
    claimed = await fenced.claim_run(OID)
    assert claimed is not None
    run = OrderRun(claimed.order, claimed.seq, sink, fenced, active, clock, RetryPolicy(), epoch=claimed.epoch)
    assert await run.may_sign()
    await fenced.claim_run(OID)  # another run takes the order
    assert not await run.may_sign()
    with pytest.raises(StaleRun):
        await run.emit(S.ROUTING, attempt=1)
    with pytest.raises(StaleRun):
        await run.set_triggered(None)
    assert fenced.events_for(OID) == [] and sink.events == []


async def test_without_fencing_a_run_may_always_sign(fakes, journal, active, sink, clock) -> None:
    journal.put(fakes.order())
    loaded = await journal.load(OID)
    run = OrderRun(loaded[0], loaded[1], sink, journal, active, clock, RetryPolicy())
    assert run.epoch is None and await run.may_sign()


async def test_a_stale_terminal_write_is_never_published(fakes, fenced, active, sink, clock) -> None:
    fenced.put(fakes.order())
    claimed = await fenced.claim_run(OID)
    assert claimed is not None
    run = OrderRun(claimed.order, claimed.seq, sink, fenced, active, clock, RetryPolicy(), epoch=claimed.epoch)
    await run.emit(S.ROUTING, attempt=1)
    await run.settled()
    await fenced.claim_run(OID)
    await run.emit(S.FAILED, failure_reason="no route")
    with pytest.raises(StaleRun):
        await run.settled()
    assert [e.status for e in sink.events] == [S.ROUTING]
    assert ("finish", OID, S.FAILED) not in active.calls  # the hot copy never saw it either
