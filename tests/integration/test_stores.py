"""PostgreSQL journal and settlement store, Redis orders/queue, against the real servers."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from engine.adapters.postgres import PostgresJournal, create_pool, migrate
from engine.adapters.redis_store import RedisOrders
from engine.adapters.settlement_store import PostgresSettlementStore
from engine.bands import Band
from engine.errors import DuplicateRequest, StoreUnavailable
from engine.intake import new_order
from engine.models import OrderEvent, OrderRequest, OrderStatus, OrderType
from engine.settlement import PendingTx


def _order(amount: float = 1.0, order_type: OrderType = OrderType.MARKET, at: float = 1_764_000_000_000.0):
    request = OrderRequest(token_in="SOL", token_out="USDC", amount=amount, order_type=OrderType.MARKET)
    order, first = new_order(request, at)
    return order.model_copy(update={"order_type": order_type}), first


async def test_migrations_are_idempotent(pg_pool: asyncpg.Pool) -> None:
    assert await migrate(pg_pool) == await migrate(pg_pool)
    tables = {r["tablename"] for r in await pg_pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"orders", "order_events", "order_settlements", "schema_migrations"} <= tables
    assert "venue_swaps" not in tables  # no ledger of swaps by orderId: the chain is the record


async def test_journal_records_every_transition(journal: PostgresJournal) -> None:
    order, first = _order()
    await journal.insert_order(order, first)
    routing = OrderEvent(order_id=order.order_id, seq=2, status=OrderStatus.ROUTING, at=first.at + 5, attempt=1)
    order = order.apply(routing)
    await journal.record(order, [routing])
    await journal.record(order, [routing])  # replay: idempotent per seq
    loaded = await journal.load(order.order_id)
    assert loaded is not None
    assert loaded[0].status is OrderStatus.ROUTING and loaded[0].attempts == 1 and loaded[1] == 2
    assert [e.status for e in await journal.events(order.order_id)] == [OrderStatus.PENDING, OrderStatus.ROUTING]
    assert [o.order_id for o in await journal.open_orders()] == [order.order_id]


async def _to_building(journal: PostgresJournal, claim: bool) -> bool:
    """A stored order routed and then built; the building write claims it when ``claim``."""
    order, first = _order()
    await journal.insert_order(order, first)
    routing = OrderEvent(order_id=order.order_id, seq=2, status=OrderStatus.ROUTING, at=first.at + 5, attempt=1)
    order = order.apply(routing)
    assert await journal.record(order, [routing]) is True  # not a claim: always True
    building = OrderEvent(order_id=order.order_id, seq=3, status=OrderStatus.BUILDING, at=first.at + 9)
    if not claim:
        return await journal.request_cancel(order.order_id)
    return await journal.record(order.apply(building), [building], claim=True)


async def test_the_building_write_claims_the_order_and_then_a_cancel_is_refused(journal: PostgresJournal) -> None:
    assert await _to_building(journal, claim=True) is True
    (order,) = await journal.open_orders()
    assert order.status is OrderStatus.BUILDING
    assert await journal.request_cancel(order.order_id) is False  # claimed: too late to cancel
    assert not order.cancel_requested


async def test_a_cancel_before_the_building_write_wins_over_the_claim(journal: PostgresJournal) -> None:
    assert await _to_building(journal, claim=False) is True  # the client's cancel is flagged
    (order,) = await journal.open_orders()
    building = OrderEvent(order_id=order.order_id, seq=3, status=OrderStatus.BUILDING, at=order.submitted_at + 9)
    assert await journal.record(order.apply(building), [building], claim=True) is False
    assert (await journal.get(order.order_id)).cancel_requested  # type: ignore[union-attr]


async def test_claims_in_one_batch_are_decided_per_order(journal: PostgresJournal) -> None:
    """Many building writes share one statement; each answers for its own order."""
    orders = []
    for i in range(6):
        order, first = _order(amount=1.0 + i, at=1_764_000_000_000.0 + i)
        await journal.insert_order(order, first)
        orders.append(order)
    for order in orders[::2]:
        assert await journal.request_cancel(order.order_id)
    events = [OrderEvent(order_id=o.order_id, seq=2, status=OrderStatus.ROUTING, at=o.submitted_at + 1) for o in orders]
    await asyncio.gather(*(journal.record(o.apply(e), [e]) for o, e in zip(orders, events, strict=True)))
    built = [OrderEvent(order_id=o.order_id, seq=3, status=OrderStatus.BUILDING, at=o.submitted_at + 2) for o in orders]
    answers = await asyncio.gather(*(journal.record(o.apply(e), [e], claim=True) for o, e in zip(orders, built, strict=True)))
    assert answers == [False, True, False, True, False, True]
    assert journal.batching()["records"].flushes < 12  # shared statements


async def test_journal_idempotency_key(journal: PostgresJournal) -> None:
    order, first = _order()
    await journal.insert_order(order, first, "key-1", "hash-a")
    again, again_first = _order(at=first.at + 1)
    with pytest.raises(DuplicateRequest) as info:
        await journal.insert_order(again, again_first, "key-1", "hash-b")
    assert info.value.order_id == order.order_id and info.value.request_hash == "hash-a"
    assert await journal.get(again.order_id) is None


async def test_journal_unreachable_is_store_unavailable() -> None:
    with pytest.raises((StoreUnavailable, OSError)):
        pool = await create_pool("postgresql://postgres@127.0.0.1:1/none", min_size=0, max_size=1)
        await PostgresJournal(pool).ping()


async def test_the_settlement_store_refuses_to_replace_a_transaction_it_did_not_see(pg_pool: asyncpg.Pool) -> None:
    """The compare-and-set behind "re-sign only after the old one can no longer land": a run may store
    a new transaction only in place of the one it judged dead; a run that saw none may store only the first."""
    store = PostgresSettlementStore(pg_pool)
    order, first = _order()
    await PostgresJournal(pg_pool).insert_order(order, first)
    one = PendingTx(order.order_id, "sig-1", b"tx-1", 100)
    assert await store.load(order.order_id) is None
    assert await store.save(one, None) is True
    assert await store.save(PendingTx(order.order_id, "sig-zombie", b"tx-z", 101), None) is False  # another run's first
    assert await store.save(PendingTx(order.order_id, "sig-2", b"tx-2", 200), "sig-0") is False  # replaces one it never saw
    assert await store.load(order.order_id) == one
    two = PendingTx(order.order_id, "sig-2", b"tx-2", 200)
    assert await store.save(two, "sig-1") is True
    assert await store.save(PendingTx(order.order_id, "sig-3", b"tx-3", 300), "sig-1") is False  # a second run that judged sig-1 dead
    assert await store.load(order.order_id) == two
    assert await store.signatures([order.order_id, "order_unknown"]) == {order.order_id: "sig-2"}


async def test_redis_accept_update_finish(redis_orders: RedisOrders) -> None:
    order, _ = _order()
    await redis_orders.accept(order)
    assert await redis_orders.active_ids() == {order.order_id}
    assert (await redis_orders.get(order.order_id)) == order
    done = order.model_copy(update={"status": OrderStatus.CONFIRMED})
    await redis_orders.finish(done)
    assert await redis_orders.active_ids() == set()
    stored = await redis_orders.get(order.order_id)
    assert stored is not None and stored.status is OrderStatus.CONFIRMED
    ttl = await redis_orders.client.ttl(redis_orders.order_key(order.order_id))
    assert 0 < ttl <= 3600


async def test_redis_queue_serves_market_orders_first(redis_orders: RedisOrders) -> None:
    limit, _ = _order(order_type=OrderType.LIMIT, at=1_764_000_000_000.0)
    market_late, _ = _order(at=1_764_000_000_500.0)
    market_early, _ = _order(at=1_764_000_000_100.0)
    for order in (limit, market_late, market_early):
        await redis_orders.accept(order)
    popped = [await redis_orders.pop(0.1) for _ in range(3)]
    assert popped == [(market_early.order_id, Band.MARKET), (market_late.order_id, Band.MARKET), (limit.order_id, Band.ARM)]
    await redis_orders.enqueue(limit.order_id, Band.CONTROL, 1_764_000_009_000.0)
    await redis_orders.enqueue(market_late.order_id, Band.MARKET, 1_764_000_000_000.0)
    assert await redis_orders.pop(0.1) == (limit.order_id, Band.CONTROL)  # control items jump the queue
    assert await redis_orders.pop(0.1) == (market_late.order_id, Band.MARKET)
    assert await redis_orders.pop(0.05) is None


async def test_redis_forget_undoes_accept(redis_orders: RedisOrders) -> None:
    order, _ = _order()
    await redis_orders.accept(order)
    await redis_orders.forget(order.order_id)
    assert await redis_orders.get(order.order_id) is None
    assert await redis_orders.active_ids() == set()
    assert await redis_orders.queued() == 0


async def test_sweep_candidates_are_old_open_orders_not_held_by_the_watcher(journal: PostgresJournal) -> None:
    old, first = _order(at=1_764_000_000_000.0)
    await journal.insert_order(old, first)
    recent, recent_first = _order(at=1_764_000_100_000.0)
    await journal.insert_order(recent, recent_first)
    waiting, waiting_first = _order(order_type=OrderType.LIMIT, at=1_764_000_000_001.0)
    await journal.insert_order(waiting, waiting_first)
    event = OrderEvent(order_id=waiting.order_id, seq=2, status=OrderStatus.WAITING, at=waiting_first.at + 1, reason="limit")
    await journal.record(waiting.apply(event), [event])
    assert await journal.sweep_candidates(1_764_000_050_000.0) == [old.order_id]  # recent is too new, waiting is held
    await journal.set_triggered(waiting.order_id, waiting_first.at + 2)  # triggered: it needs the queue again
    assert sorted(await journal.sweep_candidates(1_764_000_050_000.0)) == sorted([old.order_id, waiting.order_id])


async def test_terminal_among_returns_only_finished_orders_in_full(journal: PostgresJournal) -> None:
    open_order, open_first = _order()
    await journal.insert_order(open_order, open_first)
    done, done_first = _order()
    await journal.insert_order(done, done_first)
    event = OrderEvent(order_id=done.order_id, seq=2, status=OrderStatus.FAILED, at=done_first.at + 1, failure_reason="no route")
    await journal.record(done.apply(event), [event])
    found = await journal.terminal_among([open_order.order_id, done.order_id, "order_1764000000000_00000000"])
    assert [(o.order_id, o.status, o.failure_reason) for o in found] == [(done.order_id, OrderStatus.FAILED, "no route")]
    assert await journal.terminal_among([]) == []
