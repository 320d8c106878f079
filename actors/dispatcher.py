"""Dispatcher: moves orders from the durable queue to executors, within the rate and concurrency limits.

The queue is a Redis sorted set rebuilt from PostgreSQL (the source of truth)
at start-up and whenever Redis comes back empty, so no accepted order depends
on this actor's memory. At most ``max_concurrent_orders`` run at once; each
MARKET (or triggered) start costs one token from the RateLimiter. Under load one
queue pop and one limiter call serve a whole batch of free slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

from actors.gc_tuning import tune_garbage_collection
from actors.warm_up import warm_up
from engine.adapters import redis_store
from engine.adapters.postgres import PostgresJournal, create_pool
from engine.adapters.redis_store import RedisOrders
from engine.batching import Pacer
from engine.errors import StoreUnavailable
from engine.lifecycle import is_terminal
from engine.logs import setup_logging
from engine.models import Order, OrderStatus
from engine.settings import Settings

log = logging.getLogger("actors.dispatcher")

MAX_REDISPATCH = 5
POP_BATCH = 64
SWEEP_EVERY_S = 5.0


def _held_by_watcher(order: Order) -> bool:
    """Waiting LIMIT/SNIPER orders live in the PriceWatcher, not in the queue."""
    return order.status is OrderStatus.WAITING and order.triggered_at is None and not order.cancel_requested


class Dispatcher:
    def __init__(self, settings: Settings, redis_url: str, database_url: str, executors: list[Any], limiter: Any) -> None:
        setup_logging(settings.log_level)
        tune_garbage_collection()
        self._settings = settings
        self._redis_url = redis_url
        self._database_url = database_url
        self._executors = executors
        self._limiter = limiter
        self._load = [0] * len(executors)
        self._running: set[str] = set()
        self._slots = asyncio.Semaphore(settings.max_concurrent_orders)
        self._tasks: set[asyncio.Task[None]] = set()
        self._pump: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._warming: asyncio.Task[None] | None = None
        self._epoch = uuid.uuid4().hex
        self._pool: asyncpg.Pool | None = None
        self._redis: aioredis.Redis | None = None
        self._stock = 0  # rate-limit tokens taken ahead of need
        self._stock_size = min(settings.rate_limit_burst, POP_BATCH)
        self._topping_up: asyncio.Task[None] | None = None
        self._redispatched: dict[str, int] = {}
        self._given_up: set[str] = set()
        self.peak_running = 0
        self.dispatched = 0
        self.handoffs = 0  # run_many calls: batches handed to executors
        self.answers = 0  # answers streamed back (each reports one or more finished orders)

    async def ensure_started(self) -> bool:
        """Start if not running (after an actor restart); True if it had to."""
        if self._pump is not None:
            return False
        await self.start()
        return True

    async def start(self) -> int:
        """Connect, recover open orders from PostgreSQL into the queue, start pumping. Returns orders recovered."""
        self._pool = await create_pool(self._database_url, min_size=2, max_size=4)
        self._redis = redis_store.connect(self._redis_url)
        self._journal = PostgresJournal(self._pool)
        self._orders = RedisOrders(self._redis, self._settings.redis_prefix)
        # in the background: never holds up recovery
        self._warming = asyncio.create_task(warm_up([self._limiter.stats.remote()], [e.run_many.remote([]) for e in self._executors]))
        recovered = await self._recover("start-up")
        await self._orders.mark_epoch(self._epoch)
        self._pump = asyncio.create_task(self._pump_loop())
        self._watch = asyncio.create_task(self._watch_loop())
        return recovered

    async def _recover(self, why: str) -> int:
        """Queue every open order that is not running here. Idempotent.

        Orders running when the read starts may finish during it and be read as open: skip
        those too, or a finished order would be queued again with a stale state.
        """
        busy = set(self._running)
        open_orders = [o for o in await self._journal.open_orders() if o.order_id not in busy | self._running]
        await self._orders.requeue(open_orders)
        for order in open_orders:
            log.info(
                "recovered order",
                extra={
                    "order_id": order.order_id,
                    "found_status": order.status.value,
                    "attempts": order.attempts,
                    "action": "requeued",
                    "why": why,
                },
            )
        if open_orders:
            log.info("recovery done", extra={"why": why, "orders": len(open_orders)})
        return len(open_orders)

    async def _watch_loop(self) -> None:
        """Rebuild Redis from PostgreSQL if it restarted empty (the epoch key is gone), and
        sweep up open orders that are neither queued nor running (a lost queue entry)."""
        last_sweep = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            try:
                if await self._orders.epoch() != self._epoch:
                    log.warning("redis lost its state; rebuilding active orders from postgres")
                    await self._recover("redis-rebuild")
                    await self._orders.mark_epoch(self._epoch)
                elif time.monotonic() - last_sweep > SWEEP_EVERY_S:
                    last_sweep = time.monotonic()
                    await self._sweep()
            except StoreUnavailable as exc:
                log.warning("redis or postgres unavailable during watch", extra={"error": str(exc)})

    async def _sweep(self) -> None:
        """Requeue open orders found neither queued nor running (a lost queue entry), and repair hot
        copies left active for orders PostgreSQL says are finished (a terminal write to Redis that
        failed while Redis kept its data: GET would show the old state for good)."""
        busy = set(self._running)
        queued = await self._orders.queued_ids()
        candidates = await self._journal.sweep_candidates((time.time() - SWEEP_EVERY_S) * 1000)
        skip = busy | self._running | queued | self._given_up
        unseen = [c for c in candidates if c not in skip]
        # one query for all of them (the journal coalesces loads made together)
        loads = await asyncio.gather(*(self._journal.load(order_id) for order_id in unseen))
        lost = [
            loaded[0]
            for order_id, loaded in zip(unseen, loads, strict=True)
            # checked again after the read: the order may have been popped or finished meanwhile
            if loaded is not None
            and order_id not in self._running
            and not is_terminal(loaded[0].status)
            and not _held_by_watcher(loaded[0])
        ]
        if lost:
            await self._orders.requeue(lost)
            for order in lost:
                log.warning("requeued an open order found neither queued nor running", extra={"order_id": order.order_id})
        stray = await self._orders.active_ids() - skip - {order.order_id for order in lost}
        finished = [order for order in await self._journal.terminal_among(sorted(stray)) if order.order_id not in self._running]
        for order in finished:
            log.warning("repairing a stale hot copy of a finished order", extra={"order_id": order.order_id, "status": order.status.value})
        await asyncio.gather(*(self._orders.finish(order) for order in finished))  # one pipeline for them all

    async def _pump_loop(self) -> None:
        pacer = Pacer(self._settings.batch_window_ms / 1000)
        while True:
            await self._slots.acquire()
            await pacer.turn()  # under load, one round per window: one pop, one limiter call, one hand-off per executor
            free = 1
            while free < POP_BATCH and not self._slots.locked():  # every slot free now: one pop fills them
                await self._slots.acquire()
                free += 1
            try:
                items = await self._orders.pop_many(free, 1.0)
            except StoreUnavailable as exc:
                self._release(free)
                log.warning("queue unavailable", extra={"error": str(exc)})
                await asyncio.sleep(0.5)
                continue
            except Exception:
                self._release(free)
                raise
            pacer.carried(len(items))
            fresh = [(order_id, band) for order_id, band in dict(items).items() if order_id not in self._running]
            self._release(free - len(fresh))
            for order_id, _ in fresh:
                self._running.add(order_id)  # before any await, so a sweep cannot queue it twice
            waits = iter(await self._reserve(sum(1 for _, band in fresh if band.needs_token)))
            if fresh:
                # The whole round to the least-loaded executor: its orders then load, quote, write and
                # swap together (one call each), where a round split over executors pays every call
                # once per executor. Rounds alternate as loads change, so the pool stays balanced.
                index = min(range(len(self._executors)), key=self._load.__getitem__)
                self._load[index] += len(fresh)
                self.dispatched += len(fresh)
                batch = [(order_id, next(waits) if band.needs_token else 0.0) for order_id, band in fresh]
                task = asyncio.create_task(self._run(index, batch))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            self.peak_running = max(self.peak_running, len(self._running))

    async def _reserve(self, count: int) -> list[float]:
        """Rate-limit tokens for ``count`` orders: how long each must wait.

        Tokens come first from a small stock taken from the RateLimiter ahead of need (only tokens
        available at the time, so the limit holds: a token is granted before its order starts, never
        after), the rest in one ``reserve`` call. With the stock full, an order starts without a
        limiter round trip (~1.3 ms here); once half used, the stock is topped up in the background.
        """
        if count == 0:
            return []
        from_stock = min(count, self._stock)
        self._stock -= from_stock
        waits = [0.0] * from_stock
        if count > from_stock:
            waits += await self._limiter.reserve.remote(count - from_stock)
        if self._stock <= self._stock_size // 2 and (self._topping_up is None or self._topping_up.done()):
            self._topping_up = asyncio.create_task(self._top_up())
        return waits

    async def _top_up(self) -> None:
        want = self._stock_size - self._stock
        if want > 0:
            with contextlib.suppress(RayActorError, ActorUnavailableError, RayTaskError):
                taken: int = await self._limiter.take.remote(want)
                self._stock += taken

    def _release(self, count: int) -> None:
        for _ in range(count):
            self._slots.release()

    async def _run(self, index: int, batch: list[tuple[str, float]]) -> None:
        """Hand a batch to one executor (each order after its rate-limit wait, which the executor
        keeps) and free each order's slot as its answer streams back."""
        unanswered = {order_id for order_id, _ in batch}
        lost: BaseException | None = None
        try:
            self.handoffs += 1
            async for ref in self._executors[index].run_many.remote(batch):
                self.answers += 1
                for order_id, _, error in await ref:
                    unanswered.discard(order_id)
                    self._done(index, order_id)
                    if error is not None:
                        await self._lost(index, order_id, error)
        except (RayActorError, ActorUnavailableError, RayTaskError) as exc:
            lost = exc
        finally:
            for order_id in unanswered:
                self._done(index, order_id)
        for order_id in unanswered:
            await self._lost(index, order_id, f"{type(lost).__name__}: {lost}")

    def _done(self, index: int, order_id: str) -> None:
        self._load[index] -= 1
        self._running.discard(order_id)
        self._slots.release()

    async def _lost(self, index: int, order_id: str, error: str) -> None:
        """The executor died or failed mid-order: the order is still open in PostgreSQL. Queue it
        again; the next run resumes it and asks the venues for its swap before making one."""
        self._redispatched[order_id] = tries = self._redispatched.get(order_id, 0) + 1
        log.warning("executor lost the order", extra={"order_id": order_id, "error": error[:300], "redispatch": tries})
        if tries > MAX_REDISPATCH:
            log.error("order keeps failing in executors; failing it", extra={"order_id": order_id, "error": error})
            self._given_up.add(order_id)
            with contextlib.suppress(Exception):
                await self._executors[index].abandon.remote(order_id, f"internal error after {tries} executions: {error}")
            return
        with contextlib.suppress(StoreUnavailable):
            loaded = await self._journal.load(order_id)
            if loaded is not None:
                await self._orders.requeue([loaded[0]])

    def stats(self) -> dict[str, Any]:
        return {
            "running": len(self._running),
            "peak_running": self.peak_running,
            "dispatched": self.dispatched,
            "handoffs": self.handoffs,
            "answers": self.answers,
        }

    async def stop(self, drain_s: float = 0.0) -> None:
        """Stop taking orders; give running ones ``drain_s`` to finish (the rest stay recoverable)."""
        for task in (self._pump, self._watch):
            if task is not None:
                task.cancel()
        if self._tasks and drain_s > 0:
            await asyncio.wait(self._tasks, timeout=drain_s)
        with contextlib.suppress(Exception):
            if self._pool is not None:
                await self._pool.close()
            if self._redis is not None:
                await self._redis.aclose()
