"""At most one landed swap per order, carried by the protocol alone: the venues and the ledger keep
no record by orderId; every count here is read from the chain's transactions (their memos)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from engine.chain import SendOutcome, TxState
from engine.models import OrderStatus
from engine.settlement import STEPS, LegRequest, NotAllowedToSign
from settlement.faults import InjectedFault
from settlement.keys import token_account
from tests.chain_scan import double_landed, landed_per_order
from tests.settlement.conftest import KEYS, Rig

TERMINAL = {OrderStatus.CONFIRMED, OrderStatus.FAILED}


async def test_an_order_lands_one_signed_transaction(rig: Rig) -> None:
    [order_id] = await rig.submit(1, amount=2.0)
    order = await rig.workflow().run(order_id)
    assert order is not None and order.status is OrderStatus.CONFIRMED
    tx = await rig.chain.transaction(order.tx_hash or "")
    assert tx is not None and tx.memo == order_id and tx.error is None
    wallet = str(KEYS.wallet(order.account).pubkey())
    assert tx.signers[0] == wallet and len(tx.signers) >= 2  # the trader pays and signs; the venue co-signs
    trader_changes = {c.mint: c.delta for c in tx.token_changes if c.owner == wallet}
    sol, usdc = "So11111111111111111111111111111111111111112", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
    assert trader_changes[sol] == -2_000_000_000
    assert order.execution_amount == pytest.approx(trader_changes[usdc] / 1e6)
    assert order.execution_price == pytest.approx(trader_changes[usdc] / 1e6 / 2.0)
    assert str(token_account(wallet, usdc)) in {c.account for c in tx.token_changes}


async def test_an_amount_below_one_base_unit_fails_and_lands_nothing(rig: Rig) -> None:
    """Dust rounds to 0 base units: such a transaction would land moving nothing, look unlanded, and be
    replaced again and again. It must never be signed."""
    [order_id] = await rig.submit(1, amount=1e-30)
    for _ in range(3):  # resumed: still nothing signed
        await rig.workflow().run(order_id)
    order = await rig.journal.get(order_id)
    assert order is not None and order.status is OrderStatus.FAILED, order
    assert "base unit" in (order.failure_reason or "")
    assert order_id not in landed_per_order(rig.chain.transactions())


async def test_a_zombie_run_of_the_same_order_lands_nothing_more(rig: Rig) -> None:
    """Two runs of each order at once (a lost answer made the dispatcher hand it out twice)."""
    ids = await rig.submit(8)
    first, second = rig.workflow(), rig.workflow()
    await asyncio.gather(*(w.run(i) for i in ids for w in (first, second)), return_exceptions=True)
    for order_id in ids:  # a run that lost its race may have ended early: the survivor finishes
        await rig.workflow().run(order_id)
    assert double_landed(rig.chain.transactions()) == {}
    assert set(landed_per_order(rig.chain.transactions())) == set(ids)
    for order_id in ids:
        order = await rig.journal.get(order_id)
        assert order is not None and order.status is OrderStatus.CONFIRMED


async def test_a_held_back_transaction_never_lands_after_expiry(rig: Rig) -> None:
    [order_id] = await rig.submit(1)
    held: list[bytes] = []
    hold_back = rig.hold_back(held)  # the run dies before sending

    with pytest.raises(InjectedFault):
        await rig.workflow(hold_back).run(order_id)
    rig.clock_offset.offset += 61.0  # past the blockhash's validity
    assert (await rig.chain.send(held[0])).outcome is SendOutcome.BLOCKHASH_NOT_FOUND
    order = await rig.workflow().run(order_id)
    assert order is not None and order.status is OrderStatus.CONFIRMED
    from solders.transaction import Transaction

    held_signature = str(Transaction.from_bytes(held[0]).signatures[0])
    assert order.tx_hash != held_signature
    assert (await rig.chain.send(held[0])).outcome is SendOutcome.BLOCKHASH_NOT_FOUND
    assert (await rig.chain.statuses([held_signature])).states == (TxState.UNKNOWN,)
    assert landed_per_order(rig.chain.transactions())[order_id] == 1


async def test_a_persisted_transaction_is_resent_not_resigned(rig: Rig) -> None:
    """Persisted, never sent, blockhash still valid: the next run sends the same bytes."""
    [order_id] = await rig.submit(1)
    stored: list[str] = []

    async def die_after_persist(step: str, oid: str) -> None:
        if step == "persisted":
            pending = await rig.store().load(oid)
            assert pending is not None
            stored.append(pending.signature)
            raise InjectedFault(step, oid)

    with pytest.raises(InjectedFault):
        await rig.workflow(die_after_persist).run(order_id)
    order = await rig.workflow().run(order_id)
    assert order is not None and order.status is OrderStatus.CONFIRMED and order.tx_hash == stored[0]


async def test_a_run_that_may_not_sign_signs_nothing(rig: Rig) -> None:
    [order_id] = await rig.submit(1)
    settlement = rig.settlement()

    async def no() -> bool:
        return False

    order = await rig.journal.get(order_id)
    assert order is not None
    with pytest.raises(NotAllowedToSign):
        from engine.settlement import LegRequest

        quote = await rig.venues["raydium"].quote("SOL", "USDC", 1.0)
        await settlement.settle(order_id, order.account, [LegRequest(quote, 0.0)], no)
    for_the_order = [tx for tx in rig.chain.transactions() if tx.memo == order_id]
    assert for_the_order == [] and await settlement.store.load(order_id) is None


async def test_a_run_claimed_away_after_it_may_sign_stores_and_sends_nothing(rig: Rig) -> None:
    """The race the check before signing leaves: a newer run claims the order (and finds nothing stored)
    after this run was told it may sign. The store refuses this run's transaction, so it is never sent."""
    [order_id] = await rig.submit(1)
    claimed = await rig.journal.claim_run(order_id)
    assert claimed is not None
    first_epoch = claimed.epoch
    asked: list[int] = []

    async def yes_then_claimed_away() -> bool:
        asked.append(1)
        if len(asked) > 1:
            return False  # asked again, it is told the truth
        newer = await rig.journal.claim_run(order_id)  # a redispatch claims it right after the check
        assert newer is not None and newer.epoch > first_epoch
        return True

    settlement = rig.settlement()
    quote = await rig.venues["raydium"].quote("SOL", "USDC", 1.0)
    with pytest.raises(NotAllowedToSign):
        await settlement.settle(order_id, claimed.order.account, [LegRequest(quote, 0.0)], yes_then_claimed_away, claimed.epoch)
    assert await settlement.store.load(order_id) is None
    assert [tx for tx in rig.chain.transactions() if tx.memo == order_id] == []

    # the same race without an epoch (a store that does not fence) stores and sends: the epoch is what stops it
    asked.clear()
    claimed = await rig.journal.claim_run(order_id)
    assert claimed is not None
    swaps = await settlement.settle(order_id, claimed.order.account, [LegRequest(quote, 0.0)], yes_then_claimed_away)
    assert len(swaps) == 1 and landed_per_order(rig.chain.transactions())[order_id] == 1


@pytest.mark.parametrize("step", STEPS)
async def test_a_fault_at_every_step_lands_at_most_one_transaction(rig: Rig, step: str) -> None:
    """The run dies right after ``step`` (as if its executor were killed); the order is run again
    until it ends, sometimes by two runs at once."""
    ids = await rig.submit(6)
    hit: set[str] = set()

    async def die_once(at: str, oid: str) -> None:
        if at == step and oid not in hit:
            hit.add(oid)
            raise InjectedFault(at, oid)

    faulty = rig.workflow(die_once)
    for _ in range(6):
        open_ids = [i for i in ids if (o := await rig.journal.get(i)) is not None and o.status not in TERMINAL]
        if not open_ids:
            break
        runs = [faulty.run(i) for i in open_ids] + [rig.workflow().run(i) for i in open_ids[::3]]
        with contextlib.suppress(Exception):
            await asyncio.gather(*runs, return_exceptions=True)
    assert hit  # the fault did fire
    assert double_landed(rig.chain.transactions()) == {}
    statuses = {i: (await rig.journal.get(i)).status for i in ids}  # type: ignore[union-attr]
    assert all(s is OrderStatus.CONFIRMED for s in statuses.values()), statuses
    landed = landed_per_order(rig.chain.transactions())
    assert all(landed[i] == 1 for i in ids)
