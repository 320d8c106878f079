"""OrderExecutor: runs orders through :class:`engine.execution.OrderWorkflow`. Many orders at once per actor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

from actors.base import EngineActor, warm_up
from actors.chain_node import settlement_for
from actors.handles import HubSink, VenueClient, WatcherClient
from engine.adapters.trading_store import DispatchGate, TradingStateStore
from engine.batching import Coalescer, Pacer
from engine.clock import SystemClock
from engine.errors import StaleRun, StoreUnavailable
from engine.execution import OrderWorkflow
from engine.instruments import STALE_RUNS
from engine.logs import bind
from engine.models import VenueName
from engine.settings import Settings
from engine.stages import OrderMetrics
from venues.registry import configured

log = logging.getLogger("actors.executor")


class OrderExecutor(EngineActor):
    def __init__(self, settings: Settings, hub: Any, venues: dict[VenueName, Any], watcher: Any = None, chain: Any = None) -> None:
        super().__init__(settings)
        self._chain = chain
        self._hub = hub
        self._venue_handles = venues
        self._watcher = watcher
        self._workflow: OrderWorkflow | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._warming: asyncio.Task[None] | None = None
        self._batched: list[tuple[str, dict[str, Coalescer[Any, Any]]]] = []
        self.running = 0
        self.completed = 0

    async def _ready(self) -> OrderWorkflow:
        if self._workflow is None:
            async with self._lock:
                if self._workflow is None:
                    # Every connection opened now: one opened on demand cost the order that needed it
                    # 10-60 ms (the first orders after start-up, measured).
                    size = self._pool_size()
                    stores = await self.stores(min_size=size, max_size=size)
                    window_s = self._settings.batch_window_ms / 1000
                    venues = {name: VenueClient(name, handle, window_s) for name, handle in self._venue_handles.items()}
                    sink = HubSink(self._hub, window_s)
                    self._batched = [("hub", sink.batching()), ("postgres", stores.journal.batching()), ("redis", stores.orders.batching())]
                    self._batched += [(name, venue.batching()) for name, venue in venues.items()]
                    self._gate = DispatchGate(TradingStateStore(stores.pool, stores.redis, self._settings.redis_prefix), stores.orders)
                    self._workflow = OrderWorkflow(
                        venues=venues,
                        sink=sink,
                        journal=stores.journal,
                        active=stores.orders,
                        clock=SystemClock(),
                        retry=self._settings.retry_policy(),
                        max_price_impact_pct=self._settings.max_price_impact_pct,
                        rng=random.Random(),
                        watcher=WatcherClient(self._watcher) if self._watcher is not None else None,
                        observer=OrderMetrics(),
                        settlement=settlement_for(self._settings, stores.pool, venues, self._chain),
                        trigger_max_age_ms=self._settings.trigger_max_age_ms,
                    )
        return self._workflow

    def _pool_size(self) -> int:
        """Connections for this executor's share of the running orders. Event writes are batched
        (at most two statements in flight), so a few connections serve many orders; more would
        only exhaust PostgreSQL's (~100 here) when several engines share a server."""
        share = -(-self._settings.max_concurrent_orders // self._settings.executor_pool_size)
        return max(4, min(share + 2, 8))

    async def ready(self) -> bool:
        await self._ready()
        if self._warming is None:
            self._warming = asyncio.create_task(self._warm_up())  # in the background: never holds up a start
        return True

    async def _warm_up(self) -> None:
        """One empty call on every path an order takes from here (hub, each venue's reads, the watcher,
        the chain), so the first orders after start-up do not set up those connections; and each venue's
        module imported, so the first pool state that comes here (a snapshot, a trigger) unpickles at once."""
        for spec in configured(self._settings):
            with contextlib.suppress(Exception):  # the venue's own actor reports a module that does not import
                spec.factory()
        calls: list[Any] = [self._hub.stats.remote()]
        calls += [handle.read_many.remote([]) for handle in self._venue_handles.values()]
        if self._watcher is not None:
            calls.append(self._watcher.stats.remote())
        if self._chain is not None:
            calls.append(self._chain.stats.remote())
        streams = [handle.commit_many.remote([]) for handle in self._venue_handles.values()]
        streams += [handle.commit_signed_many.remote([]) for handle in self._venue_handles.values()]
        await warm_up(calls, streams)

    async def run_many(self, batch: list[tuple[str, float]]) -> AsyncIterator[list[tuple[str, str | None, str | None]]]:
        """Run a batch of orders, each after its rate-limit wait (``(order_id, wait_s)``); yield
        ``(order_id, terminal status or None, error or None)`` as they finish, a few at a time.

        One call hands over many orders and each answer reports many: under load the dispatcher's
        round trips per order fall with the batch size (an actor call costs ~1 ms of CPU here). The
        orders of a batch load, quote, claim and swap together (those calls are coalesced).
        """
        workflow = await self._ready()
        finished: asyncio.Queue[tuple[str, str | None, str | None]] = asyncio.Queue()

        async def run(order_id: str, wait_s: float) -> None:
            bind(order_id=order_id)  # this task's log lines name the order
            self.running += 1
            try:
                if wait_s > 0:
                    await asyncio.sleep(wait_s)  # its rate-limit token is due then
                if await self._held(order_id):  # halted since it was dispatched: back to the queue, not run
                    finished.put_nowait((order_id, None, None))
                    return
                order = await workflow.run(order_id)
                finished.put_nowait((order_id, order.status.value if order else None, None))
            except StaleRun as exc:  # a newer run holds the order: this one stops without a trace
                STALE_RUNS.inc()
                log.info("run fenced out: a newer run holds the order", extra={"order_id": order_id, "epoch": exc.epoch})
                finished.put_nowait((order_id, None, None))
            except Exception as exc:  # reported, not raised: the other orders of the batch go on
                log.exception("order run failed", extra={"order_id": order_id})
                finished.put_nowait((order_id, None, f"{type(exc).__name__}: {exc}"))
            finally:
                self.running -= 1
                self.completed += 1

        for order_id, wait_s in batch:
            task = asyncio.create_task(run(order_id, wait_s))
            self._tasks.add(task)  # runs to its end even if the caller goes away: the order stays consistent
            task.add_done_callback(self._tasks.discard)
        reported = 0
        pacer = Pacer(self._settings.batch_window_ms / 1000)
        while reported < len(batch):
            answers = [await finished.get()]
            await pacer.turn()  # under load, orders finishing within a window share one answer
            while not finished.empty():
                answers.append(finished.get_nowait())
            pacer.carried(len(answers))
            reported += len(answers)
            yield answers

    async def _held(self, order_id: str) -> bool:
        try:
            return await self._gate.hold(order_id)
        except StoreUnavailable:  # the dispatcher checked the trading state when it popped the order
            return False

    async def abandon(self, order_id: str, reason: str) -> str | None:
        """Fail an order that cannot be executed (it keeps crashing executors), so it still ends."""
        bind(order_id=order_id)
        try:
            order = await (await self._ready()).fail(order_id, reason)
        except StaleRun:
            STALE_RUNS.inc()
            return None
        return order.status.value if order else None

    def load(self) -> int:
        return self.running

    def stats(self) -> dict[str, Any]:
        """Orders run, and how well calls were shared: per port, round trips and items carried."""
        batching: dict[str, dict[str, int]] = {}
        for owner, coalescers in self._batched:
            for name, coalescer in coalescers.items():
                batching[f"{owner}.{name}"] = {"flushes": coalescer.flushes, "items": coalescer.items}
        return {"running": self.running, "completed": self.completed, "batching": batching}
