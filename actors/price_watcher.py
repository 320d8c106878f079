"""PriceWatcher: holds waiting LIMIT and SNIPER orders and fires them when their condition holds.

Venues push their pool changes (``pools_changed``, as a real engine subscribes to pool accounts):
the orders of a changed pair are decided at once over the pushed state. A poll is the fallback:
each tick reads every venue's pool once per watched pair (a snapshot) and decides for all that
pair's orders locally (:mod:`engine.watching`), so venue load does not grow with the number of
orders, and a lost push costs at most one interval. A fired order is marked triggered in
PostgreSQL and queued for execution (the dispatcher's blocking pop wakes on it); the pool state
that fired it is kept a while (:meth:`PriceWatcher.trigger`) so its run can swap on it without
quoting again. An expired one is queued for closing. The watch list is rebuilt from PostgreSQL
when the actor starts, so a restart loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import ray

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
from engine.watching import Seen, Trigger, Verdict, decide, fresh_views

log = logging.getLogger("actors.price_watcher")

SUBSCRIBE_EVERY_S = 5.0
"""How often the watcher subscribes to the venues again (idempotent): a restarted quoter forgets it."""

Pair = tuple[str, str]


class _Round:
    """What one round of decisions asks the stores: each at most once, and only if something would fire."""

    def __init__(self, watcher: PriceWatcher, states: TradingStates | None = None, read: bool = False, via: str = "poll") -> None:
        self.via = via  # what brought the round on (push, poll, watch): logged with what it fires
        self._watcher = watcher
        self._states = states
        self._read = read
        self._dispatching: bool | None = None

    async def states(self) -> TradingStates | None:
        if not self._read:
            if self._dispatching is None:  # both are asked before a trigger: at once
                self._states, self._dispatching = await asyncio.gather(self._watcher._states(), self._watcher._dispatching())
            else:
                self._states = await self._watcher._states()
            self._read = True
        return self._states

    async def dispatching(self) -> bool:
        if self._dispatching is None:
            self._dispatching = await self._watcher._dispatching()
        return self._dispatching


class PriceWatcher(EngineActor):
    def __init__(self, settings: Settings, venues: dict[VenueName, Any]) -> None:
        super().__init__(settings)
        self._venues = venues
        self._watches: dict[Pair, dict[str, Watch]] = defaultdict(dict)
        self._seen: dict[frozenset[str], dict[VenueName, Seen]] = defaultdict(dict)
        self._triggers: dict[str, Trigger] = {}
        self._loop: asyncio.Task[None] | None = None
        self._subscriptions: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.ticks = 0
        self.snapshots = 0
        self.fired = 0
        self.pushes = 0
        self.fired_on_push = 0

    async def ensure_started(self) -> bool:
        """Connect, load every waiting order from PostgreSQL, subscribe to the venues, start ticking.
        True if it had to start."""
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
            await self._subscribe()
            self._subscriptions = asyncio.create_task(self._resubscribe())
            self._loop = asyncio.create_task(self._run())
            log.info("price watcher started", extra={"watching": self.watching()})
            return True

    async def _resubscribe(self) -> None:
        while True:
            await asyncio.sleep(SUBSCRIBE_EVERY_S)
            await self._subscribe()

    async def _subscribe(self) -> None:
        """Ask every venue to push its pool changes here (a venue that cannot is polled only)."""
        with contextlib.suppress(Exception):  # not running as an actor (nothing can push to it), or a venue is down
            me = ray.get_runtime_context().current_actor
            await asyncio.gather(*(handle.subscribe.remote(me) for handle in self._venues.values()), return_exceptions=True)

    def _add(self, watch: Watch) -> None:
        self._watches[watch.pair][watch.order_id] = watch

    async def watch(self, order: Order) -> None:
        """Hold the order; decide at once over recently pushed pool states (a pool listed just before
        the order got here must not wait for the poll)."""
        await self.ensure_started()
        watch = Watch.of(order)
        self._add(watch)
        now_ms = time.time() * 1000
        seen = self._seen.get(frozenset(watch.pair), {})
        if any(now_ms - s.at_ms <= self._settings.trigger_max_age_ms for s in seen.values()):
            views = fresh_views(self._venues, seen, now_ms, self._settings.trigger_max_age_ms)
            await self._decide(watch.pair, views, now_ms, _Round(self, via="watch"))

    async def unwatch(self, order_id: str) -> None:
        for watches in self._watches.values():
            watches.pop(order_id, None)

    def watching(self) -> int:
        return sum(len(w) for w in self._watches.values())

    async def trigger(self, order_id: str) -> Trigger | None:
        """The pool states that fired the order, handed out once (None if not held, or dropped as too old)."""
        return self._triggers.pop(order_id, None)

    async def pools_changed(self, venue: VenueName, changes: list[tuple[str, str, PoolView, float]]) -> int:
        """A venue's pools changed (``(base, quote, state, at_ms)``, pushed): decide the orders of those
        pairs now. Returns how many fired or expired."""
        self.pushes += 1
        max_age = self._settings.trigger_max_age_ms
        now_ms = time.time() * 1000
        round_ = _Round(self, via="push")
        done = 0
        for base, quote, state, at_ms in changes:
            key = frozenset((base, quote))
            self._seen[key][venue] = Seen(state, at_ms)
            for pair in ((base, quote), (quote, base)):
                if self._watches.get(pair):
                    views = fresh_views(self._venues, self._seen[key], now_ms, max_age)
                    views[venue] = state  # the pushed state itself, however old the limit says states may be
                    fired = await self._decide(pair, views, now_ms, round_)
                    self.fired_on_push += fired
                    done += fired
        return done

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
        now_ms = time.time() * 1000
        self._forget_old(now_ms)
        if not pairs:
            return 0
        views = await asyncio.gather(*(self._views(pair) for pair in pairs))
        now_ms = time.time() * 1000
        for pair, pair_views in zip(pairs, views, strict=True):
            seen = self._seen[frozenset(pair)]
            for name, view in pair_views.items():
                if view is None:
                    seen.pop(name, None)
                else:
                    seen[name] = Seen(view, now_ms)
        round_ = _Round(self, await self._states(), read=True, via="poll")
        done = 0
        for pair, pair_views in zip(pairs, views, strict=True):
            done += await self._decide(pair, pair_views, now_ms, round_)
        return done

    async def _decide(self, pair: Pair, views: Mapping[VenueName, PoolView | None], now_ms: float, round_: _Round) -> int:
        """Fire or expire the pair's orders whose condition ``views`` meet; how many did."""
        done = 0
        for watch in list(self._watches[pair].values()):
            verdict = decide(watch, views, now_ms)
            if verdict is Verdict.WAIT:
                continue
            if verdict is Verdict.TRIGGER:
                states = await round_.states()
                if states is None or states.blocks(*pair):
                    continue  # a halted scope fires nothing (it may still expire); unknown state: wait too
            if not await round_.dispatching():
                continue  # a standby engine fires nothing: the active engine's watcher does
            if self._watches[pair].get(watch.order_id) is not watch:
                continue  # fired, expired or dropped meanwhile (a push and a tick decide side by side)
            del self._watches[pair][watch.order_id]  # before any await: nobody else fires it now
            if verdict is Verdict.TRIGGER:
                self._triggers[watch.order_id] = Trigger(watch.order_id, dict(self._seen[frozenset(pair)]), now_ms)
            try:
                if verdict is Verdict.TRIGGER:
                    await self._journal.set_triggered(watch.order_id, now_ms)
                    await self._orders.enqueue(watch.order_id, Band.TRIGGERED, now_ms)
                    self.fired += 1
                else:
                    await self._orders.enqueue(watch.order_id, Band.CONTROL, now_ms)
            except StoreUnavailable as exc:
                self._watches[pair].setdefault(watch.order_id, watch)
                self._triggers.pop(watch.order_id, None)
                log.warning("could not fire order; next tick retries", extra={"order_id": watch.order_id, "error": str(exc)})
                continue
            log.info(
                "order condition met" if verdict is Verdict.TRIGGER else "order expired",
                extra={"order_id": watch.order_id, "via": round_.via, "decided_ms": round(time.time() * 1000 - now_ms, 1)},
            )
            done += 1
        return done

    def _forget_old(self, now_ms: float) -> None:
        """Forget pool states too old to decide or swap on: fired orders' (their runs quote again) and
        pushed ones (a pair nobody watches would otherwise be kept for good)."""
        keep_ms = max(self._settings.trigger_max_age_ms, 1000.0)
        for order_id in [o for o, t in self._triggers.items() if now_ms - t.fired_at_ms > keep_ms]:
            del self._triggers[order_id]
        for key, seen in list(self._seen.items()):
            for venue in [v for v, s in seen.items() if now_ms - s.at_ms > keep_ms]:
                del seen[venue]
            if not seen:
                del self._seen[key]

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

    async def _views(self, pair: Pair) -> dict[VenueName, PoolView | None]:
        names = list(self._venues)
        results = await asyncio.gather(*(self._venues[n].snapshot.remote(*pair) for n in names), return_exceptions=True)
        return {name: (r if isinstance(r, PoolView) else None) for name, r in zip(names, results, strict=True)}

    def stats(self) -> dict[str, int]:
        return {
            "watching": self.watching(),
            "ticks": self.ticks,
            "snapshots": self.snapshots,
            "fired": self.fired,
            "pushes": self.pushes,
            "fired_on_push": self.fired_on_push,
        }

    async def close(self) -> None:
        for task in (self._loop, self._subscriptions):
            if task is not None:
                task.cancel()
        await super().close()
