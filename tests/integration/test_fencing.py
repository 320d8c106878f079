"""Run fencing against the real stores: a run another run replaced (a zombie) cannot write, sign or
publish, and PostgreSQL refuses a terminal flip whatever statement tries it."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from engine.adapters.postgres import PostgresJournal
from engine.adapters.redis_store import RedisOrders
from engine.clock import ManualClock
from engine.errors import StaleRun
from engine.execution import OrderRun
from engine.intake import new_order
from engine.models import Order, OrderEvent, OrderRequest, OrderStatus, OrderType
from engine.retry import RetryPolicy

S = OrderStatus


async def _stored(journal: PostgresJournal, redis_orders: RedisOrders | None = None) -> Order:
    request = OrderRequest(token_in="SOL", token_out="USDC", amount=1.0, order_type=OrderType.MARKET)
    order, first = new_order(request, 1_764_000_000_000.0)
    await journal.insert_order(order, first)
    if redis_orders is not None:
        await redis_orders.accept(order)
    return order


def _event(order: Order, seq: int, status: OrderStatus, **fields: object) -> OrderEvent:
    return OrderEvent(order_id=order.order_id, seq=seq, status=status, at=order.submitted_at + seq, **fields)


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[tuple[int | None, OrderEvent]] = []

    async def publish(self, event: OrderEvent, epoch: int | None = None) -> None:
        self.events.append((epoch, event))


async def test_claim_run_increments_the_epoch_and_loads_the_order_in_one_go(journal: PostgresJournal) -> None:
    order = await _stored(journal)
    first = await journal.claim_run(order.order_id)
    second = await journal.claim_run(order.order_id)
    assert first is not None and second is not None
    assert (first.order.order_id, first.seq) == (order.order_id, 1)
    assert second.epoch == first.epoch + 1
    assert await journal.assert_current(order.order_id, second.epoch)
    assert not await journal.assert_current(order.order_id, first.epoch)
    assert await journal.claim_run("order_unknown") is None
    # claims made together share a statement, and two of one order still get two epochs
    both = await asyncio.gather(journal.claim_run(order.order_id), journal.claim_run(order.order_id))
    assert sorted(c.epoch for c in both if c is not None) == [second.epoch + 1, second.epoch + 2]


async def test_a_stale_run_cannot_write_events_state_or_triggers(journal: PostgresJournal) -> None:
    order = await _stored(journal)
    old = await journal.claim_run(order.order_id)
    new = await journal.claim_run(order.order_id)
    assert old is not None and new is not None
    routing = _event(order, 2, S.ROUTING, attempt=1)
    with pytest.raises(StaleRun):
        await journal.record(order.apply(routing), [routing], epoch=old.epoch)
    with pytest.raises(StaleRun):
        await journal.set_triggered(order.order_id, 1.0, epoch=old.epoch)
    assert [e.seq for e in await journal.events(order.order_id)] == [1]  # nothing of the stale write
    assert await journal.record(order.apply(routing), [routing], epoch=new.epoch) is True
    loaded = await journal.load(order.order_id)
    assert loaded is not None and loaded[0].status is S.ROUTING and loaded[1] == 2


async def test_the_trigger_refuses_a_terminal_flip_and_a_lower_seq(journal: PostgresJournal, pg_pool: asyncpg.Pool) -> None:
    order = await _stored(journal)
    failed = _event(order, 2, S.FAILED, failure_reason="no route")
    await journal.record(order.apply(failed), [failed])
    with pytest.raises(asyncpg.CheckViolationError, match="refusing to move it to confirmed"):
        await pg_pool.execute("UPDATE orders SET status = 'confirmed' WHERE order_id = $1", order.order_id)
    with pytest.raises(asyncpg.CheckViolationError, match="refusing to lower it"):
        await pg_pool.execute("UPDATE orders SET last_seq = 1 WHERE order_id = $1", order.order_id)
    assert await pg_pool.fetchval("SELECT status FROM orders WHERE order_id = $1", order.order_id) == "failed"


async def test_a_zombie_run_cannot_sign_persist_or_publish(journal: PostgresJournal, redis_orders: RedisOrders) -> None:
    order = await _stored(journal, redis_orders)
    claimed = await journal.claim_run(order.order_id)
    assert claimed is not None
    sink = RecordingSink()
    zombie = OrderRun(
        claimed.order, claimed.seq, sink, journal, redis_orders, ManualClock(), RetryPolicy(), epoch=claimed.epoch
    )
    await zombie.emit(S.ROUTING, attempt=1)
    await zombie.settled()
    assert await zombie.may_sign()

    # another run claims the order (Ray reported the zombie's executor lost) and moves it on
    taken = await journal.claim_run(order.order_id)
    assert taken is not None and taken.seq == 2
    live = OrderRun(taken.order, taken.seq, sink, journal, redis_orders, ManualClock(), RetryPolicy(), epoch=taken.epoch)
    await live.emit(S.BUILDING)
    await live.settled()

    await zombie.emit(S.FAILED, failure_reason="zombie says failed")  # its terminal write is refused
    with pytest.raises(StaleRun):
        await zombie.settled()
    assert not await zombie.may_sign()  # it may not swap
    with pytest.raises(StaleRun):
        await zombie.emit(S.CANCELLED, reason="too late")
    await asyncio.sleep(0.05)  # let any publish the zombie had queued go out

    assert [(e.seq, e.status) for e in await journal.events(order.order_id)] == [(1, S.PENDING), (2, S.ROUTING), (3, S.BUILDING)]
    hot = await redis_orders.get(order.order_id)
    assert hot is not None and hot.status is S.BUILDING
    assert order.order_id in await redis_orders.active_ids()
    assert S.FAILED not in [event.status for _, event in sink.events]  # a terminal event goes out only once stored

    # a stale hot-copy write (one that raced the journal) is refused by the record's epoch
    await redis_orders.finish(hot.model_copy(update={"status": S.FAILED}), epoch=claimed.epoch)
    hot = await redis_orders.get(order.order_id)
    assert hot is not None and hot.status is S.BUILDING and order.order_id in await redis_orders.active_ids()


async def test_the_hot_copy_never_leaves_a_terminal_state(journal: PostgresJournal, redis_orders: RedisOrders) -> None:
    order = await _stored(journal, redis_orders)
    # a terminal hot copy written without an epoch (the sweep's repair from PostgreSQL)
    await redis_orders.finish(order.model_copy(update={"status": S.CONFIRMED}))
    await redis_orders.update(order.model_copy(update={"status": S.SUBMITTED}), epoch=5)  # any run's non-terminal write
    hot = await redis_orders.get(order.order_id)
    assert hot is not None and hot.status is S.CONFIRMED
    raw = await redis_orders.client.get(redis_orders.order_key(order.order_id))
    assert isinstance(raw, bytes) and not raw.startswith(b'{"runEpoch"')  # the unfenced record carries no epoch
    keys = [k async for k in redis_orders.client.scan_iter(match=f"{redis_orders.prefix}*")]
    naming = [k.decode() for k in keys if order.order_id in k.decode()]
    assert naming == [redis_orders.order_key(order.order_id)]  # the fence has no key of its own
