"""PriceWatcher: holds waiting LIMIT and SNIPER orders and fires them when their condition holds.

Each tick reads every venue's pool once per watched pair (a snapshot, as a real
engine reads pool accounts) and decides for all that pair's orders locally
(:mod:`engine.watching`), so venue load does not grow with the number of orders.
A fired order is marked triggered in PostgreSQL and queued for execution; an
expired one is queued for closing. The watch list is rebuilt from PostgreSQL
when the actor starts, so a restart loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

from actors.base import EngineActor
from engine.adapters.dispatch_lease import DispatchLease
from engine.adapters.trading_store import TradingStateStore
from engine.bands import Band
from engine.errors import StoreUnavailable
from engine.lifecycle import held_by_watcher
from engine.models import Order, VenueName
from engine.ports import PoolView
from engine.settings import Settings
from engine.trading_state import TradingStates
from engine.watch import Watch
from engine.watching import Verdict, decide

log = logging.getLogger("actors.price_watcher")


class PriceWatcher(EngineActor):
    def __init__(self, settings: Settings, venues: dict[VenueName, Any]) -> None:
        super().__init__(settings)
        self._venues = venues
        self._watches: dict[tuple[str, str], dict[str, Watch]] = defaultdict(dict)
        self._loop: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.ticks = 0
        self.snapshots = 0
        self.fired = 0

    async def ensure_started(self) -> bool:
        """Connect, load every waiting order from PostgreSQL, start ticking. True if it had to start."""
        if self._loop is not None:
            return False
        async with self._lock:
            if self._loop is not None:
                return False
            stores = await self.stores(min_size=1, max_size=4)
            self._journal, self._orders = stores.journal, stores.orders
            self._trading = TradingStateStore(stores.pool, stores.redis, self._settings.redis_prefix)
            settings = self._settings
            self._lease = DispatchLease(stores.pool, settings.lease_scope, settings.dispatch_holder, settings.dispatch_lease_ttl_s)
            for order in await self._journal.open_orders():
                if held_by_watcher(order):
                    self._add(Watch.of(order))
            self._loop = asyncio.create_task(self._run())
            log.info("price watcher started", extra={"watching": self.watching()})
            return True

    def _add(self, watch: Watch) -> None:
        self._watches[watch.pair][watch.order_id] = watch

    async def watch(self, order: Order) -> None:
        await self.ensure_started()
        self._add(Watch.of(order))

    async def unwatch(self, order_id: str) -> None:
        for watches in self._watches.values():
            watches.pop(order_id, None)

    def watching(self) -> int:
        return sum(len(w) for w in self._watches.values())

    async def _run(self) -> None:
        interval = self._settings.watch_interval_ms / 1000
        while True:
            started = time.monotonic()
            try:
                await self.tick()
            except Exception:  # a bad tick must not stop the watcher
                log.exception("price watcher tick failed")
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def tick(self) -> int:
        """One round over every watched pair; returns how many orders fired or expired."""
        pairs = [pair for pair, watches in self._watches.items() if watches]
        # counted together, before any await: stats() read between them would show a tick without its reads
        self.ticks += 1
        self.snapshots += len(pairs) * len(self._venues)
        if not pairs:
            return 0
        views = await asyncio.gather(*(self._views(pair) for pair in pairs))
        states = await self._states()
        now_ms = time.time() * 1000
        done = 0
        dispatching: bool | None = None  # asked once per tick, and only when something would fire
        for pair, pair_views in zip(pairs, views, strict=True):
            for watch in list(self._watches[pair].values()):
                verdict = decide(watch, pair_views, now_ms)
                if verdict is Verdict.WAIT or (verdict is Verdict.TRIGGER and (states is None or states.blocks(*pair))):
                    continue  # a halted scope fires nothing (it may still expire); unknown state: wait too
                if dispatching is None:
                    dispatching = await self._dispatching()
                if not dispatching:
                    continue  # a standby engine fires nothing: the active engine's watcher does
                try:
                    if verdict is Verdict.TRIGGER:
                        await self._journal.set_triggered(watch.order_id, now_ms)
                        await self._orders.enqueue(watch.order_id, Band.TRIGGERED, now_ms)
                        self.fired += 1
                    else:
                        await self._orders.enqueue(watch.order_id, Band.CONTROL, now_ms)
                except StoreUnavailable as exc:
                    log.warning("could not fire order; next tick retries", extra={"order_id": watch.order_id, "error": str(exc)})
                    continue
                log.info("order condition met" if verdict is Verdict.TRIGGER else "order expired", extra={"order_id": watch.order_id})
                self._watches[pair].pop(watch.order_id, None)
                done += 1
        return done

    async def _dispatching(self) -> bool:
        """Whether this engine's dispatcher holds the dispatch lease (else this engine stands by)."""
        try:
            return await self._lease.held_here()
        except StoreUnavailable as exc:
            log.warning("dispatch lease unreadable; firing nothing this tick", extra={"error": str(exc)})
            return False

    async def _states(self) -> TradingStates | None:
        try:
            return await self._trading.states()
        except StoreUnavailable as exc:
            log.warning("trading state unreadable; firing nothing this tick", extra={"error": str(exc)})
            return None

    async def _views(self, pair: tuple[str, str]) -> dict[VenueName, PoolView | None]:
        names = list(self._venues)
        results = await asyncio.gather(*(self._venues[n].snapshot.remote(*pair) for n in names), return_exceptions=True)
        return {name: (r if isinstance(r, PoolView) else None) for name, r in zip(names, results, strict=True)}

    def stats(self) -> dict[str, int]:
        return {"watching": self.watching(), "ticks": self.ticks, "snapshots": self.snapshots, "fired": self.fired}

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
        await super().close()
