"""Dispatcher: moves orders from the durable queue to executors, within the rate and concurrency limits.

The queue is a Redis sorted set rebuilt from PostgreSQL (the source of truth) at start-up and
whenever Redis comes back empty, so no accepted order depends on this actor's memory. What to
start and where is :class:`engine.dispatch.DispatchPolicy`'s decision; this actor does the I/O.

It dispatches only while it holds the dispatch lease of its stores
(:mod:`engine.adapters.dispatch_lease`): a second engine on the same database and Redis prefix
stands by, healthy, and takes over within seconds of the first one's lease expiring.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

from actors.base import EngineActor, warm_up
from engine.adapters.dispatch_lease import DispatchLease
from engine.adapters.event_log import EventLog
from engine.adapters.stores import Stores
from engine.adapters.trading_store import DispatchGate, TradingStateStore
from engine.bands import Band
from engine.batching import Pacer
from engine.dispatch import DispatchPolicy, Round
from engine.errors import StoreUnavailable
from engine.instruments import DISPATCHER_ACTIVE
from engine.lease import held_until
from engine.settings import Settings

log = logging.getLogger("actors.dispatcher")

POP_BATCH = 64
SWEEP_EVERY_S = 5.0
SEQUENCE_EVERY_S = 0.05
SEQUENCE_BATCH = 5_000


class Dispatcher(EngineActor):
    def __init__(self, settings: Settings, executors: list[Any], limiter: Any) -> None:
        super().__init__(settings)
        self._executors = executors
        self._limiter = limiter
        self._policy = DispatchPolicy(
            executors=len(executors),
            max_concurrent=settings.max_concurrent_orders,
            stock_size=min(settings.start_burst, POP_BATCH),
        )
        self._freed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._pump: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._sequencer: asyncio.Task[None] | None = None
        self._warming: asyncio.Task[None] | None = None
        self._topping_up: asyncio.Task[None] | None = None
        self._leasing: asyncio.Task[None] | None = None
        self._lease: DispatchLease | None = None
        self._held_until = 0.0  # monotonic: when this dispatcher must stop acting on its lease
        self.active = False
        self.takeovers = 0
        self._epoch = uuid.uuid4().hex
        self.handoffs = 0  # run_many calls: rounds handed to executors
        self.answers = 0  # answers streamed back (each reports one or more finished orders)

    async def ensure_started(self) -> bool:
        """Start if not running (after an actor restart); True if it had to."""
        if self._leasing is not None:
            return False
        await self.start()
        return True

    async def start(self) -> int:
        """Connect; if this engine gets the dispatch lease, recover open orders from PostgreSQL into
        the queue and start pumping, else stand by (asking again every renewal period). Returns
        orders recovered (0 on standby)."""
        stores = await self.stores(min_size=2, max_size=4)
        # in the background: never holds up recovery
        self._warming = asyncio.create_task(warm_up([self._limiter.stats.remote()], [e.run_many.remote([]) for e in self._executors]))
        self._gate = DispatchGate(TradingStateStore(stores.pool, stores.redis, self._settings.redis_prefix), stores.orders)
        settings = self._settings
        self._lease = DispatchLease(stores.pool, settings.lease_scope, settings.dispatch_holder, settings.dispatch_lease_ttl_s)
        recovered = 0
        if await self._renew():
            recovered = await self._activate(stores)
        else:
            DISPATCHER_ACTIVE.set(0)
            log.info("another engine dispatches for these stores; standing by", extra={"holder": settings.dispatch_holder})
        self._leasing = asyncio.create_task(self._lease_loop(stores))
        return recovered

    async def _renew(self) -> bool:
        """Ask for the lease (take or renew it); True if held. Counted from before the question, so
        this dispatcher stops acting before any other could take the lease over."""
        assert self._lease is not None
        asked = time.monotonic()
        ttl = self._settings.dispatch_lease_ttl_s
        try:
            granted = await asyncio.wait_for(self._lease.acquire(), timeout=max(0.5, ttl / 3))
        except (StoreUnavailable, TimeoutError) as exc:
            log.warning("dispatch lease could not be renewed", extra={"error": str(exc) or type(exc).__name__})
            return self.may_dispatch()
        if granted is None:
            self._held_until = 0.0
            return False
        self._held_until = held_until(asked, ttl, margin_s=min(ttl / 4, 2 * self._settings.dispatch_lease_renew_s))
        return True

    def may_dispatch(self) -> bool:
        """Whether this dispatcher holds the lease now (by its own clock, with a margin)."""
        return time.monotonic() < self._held_until

    async def _lease_loop(self, stores: Stores) -> None:
        """Renew the lease while active; ask for it on standby. Start dispatching when it is
        granted, stop as soon as it is lost."""
        while True:
            await asyncio.sleep(self._settings.dispatch_lease_renew_s)
            try:
                held = await self._renew()
                if held and not self.active:
                    self.takeovers += 1
                    log.warning("took the dispatch lease over; recovering open orders", extra={"holder": self._settings.dispatch_holder})
                    await self._activate(stores)
                elif not held and self.active:
                    log.error("lost the dispatch lease; standing by", extra={"holder": self._settings.dispatch_holder})
                    self._deactivate()
            except Exception:  # the next round tries again: this loop must outlive any one failure
                log.exception("dispatch lease round failed")

    async def _activate(self, stores: Stores) -> int:
        recovered = await self._recover(stores, "start-up" if self.takeovers == 0 else "takeover")
        await stores.orders.mark_epoch(self._epoch)
        self._pump = asyncio.create_task(self._pump_loop(stores))
        self._watch = asyncio.create_task(self._watch_loop(stores))
        self._sequencer = asyncio.create_task(self._sequence_loop(EventLog(stores.pool)))
        self.active = True
        DISPATCHER_ACTIVE.set(1)
        return recovered

    def _deactivate(self) -> None:
        """Stop dispatching (runs under way go on: they are fenced by their epochs)."""
        for task in (self._pump, self._watch, self._sequencer):
            if task is not None:
                task.cancel()
        self._pump = self._watch = self._sequencer = None
        self.active = False
        DISPATCHER_ACTIVE.set(0)

    async def _recover(self, stores: Stores, why: str) -> int:
        """Queue every open order that is not running here. Idempotent.

        Orders running when the read starts may finish during it and be read as open: skip
        those too, or a finished order would be queued again with a stale state.
        """
        busy = set(self._policy.running)
        open_orders = [o for o in await stores.journal.open_orders() if o.order_id not in busy | self._policy.running]
        await stores.orders.requeue(open_orders)
        for order in open_orders:
            log.info(
                "recovered order",
                extra={"order_id": order.order_id, "found_status": order.status.value, "attempts": order.attempts, "why": why},
            )
        if open_orders:
            log.info("recovery done", extra={"why": why, "orders": len(open_orders)})
        return len(open_orders)

    async def _watch_loop(self, stores: Stores) -> None:
        """Rebuild Redis from PostgreSQL if it restarted empty (the epoch key is gone), and sweep up
        open orders that are neither queued nor running (a lost queue entry)."""
        last_sweep = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            try:
                if await stores.orders.epoch() != self._epoch:
                    log.warning("redis lost its state; rebuilding active orders from postgres")
                    await self._recover(stores, "redis-rebuild")
                    await stores.orders.mark_epoch(self._epoch)
                elif time.monotonic() - last_sweep > SWEEP_EVERY_S:
                    last_sweep = time.monotonic()
                    await self._sweep(stores)
            except StoreUnavailable as exc:
                log.warning("redis or postgres unavailable during watch", extra={"error": str(exc)})
            except Exception:  # the next round tries again: this loop must outlive any one failure
                log.exception("dispatcher watch round failed")

    async def _sweep(self, stores: Stores) -> None:
        """Requeue open orders found neither queued nor running (a lost queue entry), and repair hot
        copies left active for orders PostgreSQL says are finished (a terminal write to Redis that
        failed while Redis kept its data: GET would show the old state for good)."""
        busy = set(self._policy.running)
        queued = await stores.orders.queued_ids() | await self._gate.store.parked_ids()  # parked: a halted pair's
        candidates = await stores.journal.sweep_candidates((time.time() - SWEEP_EVERY_S) * 1000)
        suspects = self._policy.unaccounted(candidates, queued | busy)
        # one query for all of them (the journal coalesces loads made together)
        loads = await asyncio.gather(*(stores.journal.load(order_id) for order_id in suspects))
        lost = self._policy.to_requeue(loaded[0] for loaded in loads if loaded is not None)
        if lost:
            await stores.orders.requeue(lost)
            for order in lost:
                log.warning("requeued an open order found neither queued nor running", extra={"order_id": order.order_id})
        skip = busy | self._policy.running | queued | self._policy.given_up | {order.order_id for order in lost}
        stray = await stores.orders.active_ids() - skip
        finished = [o for o in await stores.journal.terminal_among(sorted(stray)) if o.order_id not in self._policy.running]
        for order in finished:
            log.warning("repairing a stale hot copy of a finished order", extra={"order_id": order.order_id, "status": order.status.value})
        await asyncio.gather(*(stores.orders.finish(order) for order in finished))  # one pipeline for them all

    async def _sequence_loop(self, event_log: EventLog) -> None:
        """Number the events written since the last round in the engine-wide log (what the account
        streams read), as soon as they are there: again at once after a full batch, else after a pause."""
        while True:
            try:
                numbered = await event_log.sequence(SEQUENCE_BATCH)
            except StoreUnavailable as exc:
                log.warning("event log sequencing failed", extra={"error": str(exc)})
                numbered = 0
            except Exception:  # the next round tries again
                log.exception("event log sequencing failed")
                numbered = 0
            if numbered < SEQUENCE_BATCH:
                await asyncio.sleep(SEQUENCE_EVERY_S)

    async def _pump_loop(self, stores: Stores) -> None:
        pacer = Pacer(self._settings.batch_window_ms / 1000)
        while True:
            while self._policy.free_slots() <= 0:
                self._freed.clear()
                await self._freed.wait()
            await pacer.turn()  # under load, one round per window: one pop, one limiter call, one hand-off
            if not self.may_dispatch():  # the lease is not renewed in time: pop nothing until it is
                await asyncio.sleep(0.1)
                continue
            reserved = self._policy.reserve_slots(POP_BATCH)
            try:
                items = await self._gate.pop(reserved, 1.0)  # within the trading state (a halt holds orders back)
            except StoreUnavailable as exc:
                self._policy.admit(reserved, [])
                log.warning("queue unavailable", extra={"error": str(exc)})
                await asyncio.sleep(0.5)
                continue
            except Exception:  # this loop must outlive any one failure: nothing was popped, try again
                self._policy.admit(reserved, [])
                log.exception("queue pop failed")
                await asyncio.sleep(0.5)
                continue
            pacer.carried(len(items))
            fresh = self._policy.admit(reserved, items)
            if not fresh:
                continue
            try:
                waits = await self._reserve(sum(1 for _, band in fresh if band.needs_token))
            except (RayActorError, ActorUnavailableError, RayTaskError) as exc:  # the limiter is restarting
                log.warning("rate limiter unavailable; orders go back to the queue", extra={"error": type(exc).__name__})
                await self._put_back(stores, [order_id for order_id, _ in fresh])
                await asyncio.sleep(0.5)
                continue
            round_ = self._policy.assign(fresh, waits)
            task = asyncio.create_task(self._run(stores, round_))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _put_back(self, stores: Stores, order_ids: list[str]) -> None:
        """Orders popped but not handed out: free their slots and queue them again (the sweep would
        find them otherwise, later)."""
        self._policy.release(order_ids)
        self._freed.set()
        with contextlib.suppress(StoreUnavailable):
            loads = await asyncio.gather(*(stores.journal.load(order_id) for order_id in order_ids))
            await stores.orders.requeue([loaded[0] for loaded in loads if loaded is not None])

    async def _reserve(self, count: int) -> list[float]:
        """Rate-limit tokens for ``count`` orders: how long each must wait. The stock first (no limiter
        round trip), the rest in one ``reserve`` call; a half-used stock is topped up in the background."""
        if count == 0:
            return []
        from_stock = self._policy.from_stock(count)
        waits = [0.0] * from_stock
        if count > from_stock:
            waits += await self._limiter.reserve.remote(count - from_stock)
        want = self._policy.top_up()
        if want and (self._topping_up is None or self._topping_up.done()):
            self._topping_up = asyncio.create_task(self._top_up(want))
        return waits

    async def _top_up(self, want: int) -> None:
        with contextlib.suppress(RayActorError, ActorUnavailableError, RayTaskError):
            self._policy.stocked(await self._limiter.take.remote(want))

    async def _run(self, stores: Stores, round_: Round) -> None:
        """Hand a round to its executor (each order after its rate-limit wait, which the executor
        keeps) and free each order's slot as its answer streams back."""
        index = round_.executor
        unanswered = {order_id for order_id, _ in round_.orders}
        lost: BaseException | None = None
        try:
            self.handoffs += 1
            async for ref in self._executors[index].run_many.remote(round_.orders):
                self.answers += 1
                for order_id, _, error in await ref:
                    unanswered.discard(order_id)
                    self._finished(stores, index, order_id)
                    if error is not None:
                        await self._lost(stores, index, order_id, error)
        except (RayActorError, ActorUnavailableError, RayTaskError) as exc:
            lost = exc
        finally:
            for order_id in unanswered:
                self._finished(stores, index, order_id)
        for order_id in unanswered:
            await self._lost(stores, index, order_id, f"{type(lost).__name__}: {lost}")

    def _finished(self, stores: Stores, index: int, order_id: str) -> None:
        band = self._policy.finished(index, order_id)
        self._freed.set()
        if band is not None:  # popped while this run was under way (e.g. fired by the watcher): queue it again now
            task = asyncio.create_task(self._enqueue(stores, order_id, band))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _enqueue(self, stores: Stores, order_id: str, band: Band) -> None:
        try:
            await stores.orders.enqueue(order_id, band, time.time() * 1000)
        except StoreUnavailable as exc:  # the sweep queues it later
            log.warning("could not queue a deferred order again", extra={"order_id": order_id, "error": str(exc)})

    async def _lost(self, stores: Stores, index: int, order_id: str, error: str) -> None:
        """The executor died or failed mid-order: the order is still open in PostgreSQL. Queue it
        again (the next run resumes it), or fail it once its redispatch budget is spent."""
        requeue = self._policy.lost(order_id)
        tries = self._policy.redispatches(order_id)
        log.warning("executor lost the order", extra={"order_id": order_id, "error": error[:300], "redispatch": tries})
        if not requeue:
            log.error("order keeps failing in executors; failing it", extra={"order_id": order_id, "error": error})
            try:
                await self._executors[index].abandon.remote(order_id, f"internal error after {tries} executions: {error}")
                return
            except Exception as exc:  # its executor is still restarting: the order stays queued until one can fail it
                log.warning("could not fail the order yet; queued again", extra={"order_id": order_id, "error": f"{type(exc).__name__}"})
        with contextlib.suppress(StoreUnavailable):
            loaded = await stores.journal.load(order_id)
            if loaded is not None:
                await stores.orders.requeue([loaded[0]])

    def stats(self) -> dict[str, Any]:
        return {
            "running": len(self._policy.running),
            "peak_running": self._policy.peak_running,
            "dispatched": self._policy.dispatched,
            "handoffs": self.handoffs,
            "answers": self.answers,
            "dispatcher": "active" if self.active else "standby",
        }

    async def stop(self, drain_s: float = 0.0) -> None:
        """Stop taking orders; give running ones ``drain_s`` to finish (the rest stay recoverable)."""
        for task in (self._pump, self._watch, self._sequencer, self._leasing):
            if task is not None:
                task.cancel()
        if self._tasks and drain_s > 0:
            await asyncio.wait(self._tasks, timeout=drain_s)
        if self.active and self._lease is not None:  # a successor need not wait out the lease
            with contextlib.suppress(Exception):
                await self._lease.release()
        self.active = False
        await self.close()
