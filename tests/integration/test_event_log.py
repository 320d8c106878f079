"""The engine-wide event log on real PostgreSQL: numbering in commit order while writers and
readers run at once, so a reader resuming after any id misses nothing and repeats nothing."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from engine.adapters.event_log import EventLog
from engine.adapters.postgres import PostgresJournal
from engine.intake import NewOrder, new_order
from engine.models import OrderEvent, OrderRequest, OrderStatus, OrderType

S = OrderStatus
STEPS = (S.ROUTING, S.BUILDING, S.SUBMITTED, S.CONFIRMED)


async def _orders(journal: PostgresJournal, count: int, order_type: OrderType = OrderType.MARKET) -> list[str]:
    batch = []
    for i in range(count):
        request = OrderRequest(token_in="SOL", token_out="USDC", amount=1.0 + i, order_type=order_type)
        order, first = new_order(request, time.time() * 1000)
        batch.append(NewOrder(order, first))
    await journal.insert_orders(batch)
    return [item.order.order_id for item in batch]


async def _run(journal: PostgresJournal, order_id: str) -> None:
    loaded = await journal.load(order_id)
    assert loaded is not None
    order, seq = loaded
    for status in STEPS:
        seq += 1
        event = OrderEvent(order_id=order_id, seq=seq, status=status, at=time.time() * 1000)
        order = order.apply(event)
        await journal.record(order, [event])
        await asyncio.sleep(0)


async def _all_numbered(log: EventLog, pg_pool: asyncpg.Pool, ids: list[str]) -> None:
    """Number the rest, until none of these orders' events is left unnumbered: another sequencer of the
    same database (an engine's dispatcher from an earlier test) may hold the lock and number some itself."""
    while await pg_pool.fetchval("SELECT count(*) FROM order_events WHERE event_id IS NULL AND order_id = ANY($1)", ids):
        if not await log.sequence():
            await asyncio.sleep(0.01)


async def test_a_reader_during_concurrent_writes_sees_every_event_once_in_order(pg_pool: asyncpg.Pool, journal: PostgresJournal) -> None:
    log = EventLog(pg_pool)
    start = await log.head()
    ids = await _orders(journal, 40)
    seen: list[tuple[int, str, int]] = []
    writing = True

    async def sequencer() -> None:
        while writing:
            await log.sequence(limit=7)  # small batches: many sequencing rounds interleave with the writes
            await asyncio.sleep(0.001)

    reading = True

    async def reader() -> None:
        position = start
        while True:
            page = await log.after(position, 13)
            seen.extend((item.event_id, item.event.order_id, item.event.seq) for item in page)
            if page:
                position = page[-1].event_id
            elif not reading:
                return
            await asyncio.sleep(0.001)

    numbering = asyncio.create_task(sequencer())
    reading_task = asyncio.create_task(reader())
    await asyncio.gather(*(_run(journal, order_id) for order_id in ids))
    writing = False
    await asyncio.wait_for(numbering, 120)
    await _all_numbered(log, pg_pool, ids)
    reading = False  # the reader stops once it has read everything numbered
    await asyncio.wait_for(reading_task, 120)

    event_ids = [event_id for event_id, _, _ in seen]
    assert event_ids == sorted(event_ids) and len(set(event_ids)) == len(event_ids)
    assert len(seen) == len(ids) * (1 + len(STEPS))  # every event of every order, once
    for order_id in ids:
        seqs = [seq for _, oid, seq in seen if oid == order_id]
        assert seqs == list(range(1, 2 + len(STEPS))), (order_id, seqs)  # an order's events in its own order


async def test_filters_and_the_head(pg_pool: asyncpg.Pool, journal: PostgresJournal) -> None:
    log = EventLog(pg_pool)
    start = await log.head()
    market = await _orders(journal, 2)
    limit = await _orders(journal, 1, OrderType.LIMIT)
    await _run(journal, market[0])
    await _all_numbered(log, pg_pool, market + limit)
    everything = await log.after(start, 1_000)
    assert len(everything) == 2 + 1 + len(STEPS)
    assert await log.head() == everything[-1].event_id
    only_limit = await log.after(start, order_types=["LIMIT"])
    assert [item.event.order_id for item in only_limit] == limit
    confirmed = await log.after(start, statuses=["confirmed"])
    assert [(item.event.order_id, item.event.status) for item in confirmed] == [(market[0], S.CONFIRMED)]


async def test_one_sequencer_at_a_time(pg_pool: asyncpg.Pool, journal: PostgresJournal) -> None:
    log = EventLog(pg_pool)
    await _orders(journal, 30)
    counts = await asyncio.gather(*(log.sequence(limit=1_000) for _ in range(5)))
    assert sum(counts) == 30  # rounds that found the lock taken numbered nothing; none numbered twice
    rows = await pg_pool.fetch("SELECT event_id FROM order_events WHERE event_id IS NOT NULL")
    assert len({row["event_id"] for row in rows}) == len(rows)
