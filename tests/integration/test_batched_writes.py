"""Batched writes against the real servers: many intakes in one INSERT, many events in one statement,
many hot-copy writes in one pipeline. Every caller's answer is its own, and nothing is lost or mixed up."""

from __future__ import annotations

import asyncio

from engine.adapters.postgres import PostgresJournal
from engine.adapters.redis_store import RedisOrders
from engine.intake import NewOrder, new_order
from engine.models import Order, OrderEvent, OrderRequest, OrderStatus, OrderType

AT = 1_764_000_000_000.0


def _new(i: int, key: str | None = None, request_hash: str | None = None) -> NewOrder:
    request = OrderRequest(token_in="SOL", token_out="USDC", amount=1.0 + i, order_type=OrderType.MARKET)
    order, first = new_order(request, AT + i)
    return NewOrder(order, first, key, request_hash)


def _next(order: Order, seq: int, status: OrderStatus, **fields: object) -> tuple[Order, OrderEvent]:
    event = OrderEvent(order_id=order.order_id, seq=seq, status=status, at=AT + seq, **fields)
    return order.apply(event), event


async def test_one_insert_stores_a_batch_and_answers_each_key(journal: PostgresJournal) -> None:
    taken = _new(0, "taken", "hash-taken")
    assert await journal.insert_orders([taken]) == [None]
    batch = [_new(1), _new(2, "fresh", "h2"), _new(3, "taken", "other"), _new(4, "twice", "h4"), _new(5, "twice", "h4")]
    answers = await journal.insert_orders(batch)
    assert answers[0] is None and answers[1] is None and answers[3] is None
    assert answers[2] is not None and (answers[2].order_id, answers[2].request_hash) == (taken.order.order_id, "hash-taken")
    assert answers[4] is not None and answers[4].order_id == batch[3].order.order_id  # a key used twice: the first wins
    for item, answer in zip(batch, answers, strict=True):
        loaded = await journal.load(item.order.order_id)
        assert (loaded is not None) == (answer is None)
        if loaded is not None:
            assert loaded[0].amount == item.order.amount and loaded[1] == 1
            assert [e.status for e in await journal.events(item.order.order_id)] == [OrderStatus.PENDING]


async def test_concurrent_records_share_statements_and_land_whole(journal: PostgresJournal) -> None:
    items = [_new(i) for i in range(40)]
    await journal.insert_orders(items)
    routed = [_next(n.order, 2, OrderStatus.ROUTING, attempt=1) for n in items]
    flushes_before = journal._records.flushes
    await asyncio.gather(*(journal.record(order, [event]) for order, event in routed))
    assert journal._records.flushes - flushes_before < len(items)  # they were batched
    failed = [_next(order, 3, OrderStatus.FAILED, failure_reason=f"reason {i}") for i, (order, _) in enumerate(routed)]
    await asyncio.gather(*(journal.record(order, [event]) for order, event in failed))
    for i, n in enumerate(items):
        loaded = await journal.load(n.order.order_id)
        assert loaded is not None
        assert (loaded[0].status, loaded[0].attempts, loaded[0].failure_reason, loaded[1]) == (OrderStatus.FAILED, 1, f"reason {i}", 3)
        assert [e.seq for e in await journal.events(n.order.order_id)] == [1, 2, 3]


async def test_two_events_of_one_order_in_one_batch_are_written_in_order(journal: PostgresJournal) -> None:
    item = _new(0)
    await journal.insert_orders([item])
    order, routing = _next(item.order, 2, OrderStatus.ROUTING, attempt=1)
    order, cancelled = _next(order, 3, OrderStatus.CANCELLED, reason="cancelled by the client")
    routed = order.model_copy(update={"status": OrderStatus.ROUTING})
    await journal._record_many([(routed, (routing,), False, -1), (order, (cancelled,), False, -1)])
    loaded = await journal.load(item.order.order_id)
    assert loaded is not None and loaded[0].status is OrderStatus.CANCELLED and loaded[1] == 3


async def test_hot_copy_writes_share_a_pipeline(redis_orders: RedisOrders) -> None:
    items = [_new(i).order for i in range(20)]
    await redis_orders.accept_many(items)
    assert await redis_orders.active_ids() == {o.order_id for o in items}
    done = [_next(o, 2, OrderStatus.FAILED, failure_reason="x")[0] for o in items[:10]]
    moving = [_next(o, 2, OrderStatus.ROUTING, attempt=1)[0] for o in items[10:]]
    await asyncio.gather(*(redis_orders.finish(o) for o in done), *(redis_orders.update(o) for o in moving))
    assert await redis_orders.active_ids() == {o.order_id for o in moving}
    for order in done + moving:
        stored = await redis_orders.get(order.order_id)
        assert stored is not None and stored.status is order.status
    assert await redis_orders.client.ttl(redis_orders.order_key(done[0].order_id)) > 0
    assert await redis_orders.client.ttl(redis_orders.order_key(moving[0].order_id)) == -1
