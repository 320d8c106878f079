"""Running one order: route, build, submit, confirm, with retries. The heart of the engine.

:class:`OrderWorkflow` holds no Ray, Redis or PostgreSQL code: venues, the event
sink, the journal and the active-order cache are ports handed in. Every transition
goes through :meth:`OrderRun.emit`, which checks it against the lifecycle table,
publishes it (live), updates the hot copy, then persists it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.clock import Clock
from engine.errors import NoRouteError, StoreUnavailable, VenueError
from engine.lifecycle import check_transition, is_terminal
from engine.models import DexQuote, Order, OrderEvent, OrderStatus, RoutingDecision, SwapResult, VenueName
from engine.ports import ActiveOrders, EventSink, OrderJournal
from engine.retry import RetryPolicy
from engine.routing import choose_route
from engine.venue import Venue

log = logging.getLogger("engine.execution")

S = OrderStatus


@dataclass
class OrderRun:
    """One order being worked on: its current state and the seq of its last event."""

    order: Order
    seq: int
    sink: EventSink
    journal: OrderJournal
    active: ActiveOrders
    clock: Clock
    store_retry: RetryPolicy

    async def emit(self, status: OrderStatus, **fields: Any) -> Order:
        check_transition(self.order.status, status)
        event = OrderEvent(order_id=self.order.order_id, seq=self.seq + 1, status=status, at=self.clock.epoch_ms(), **fields)
        try:
            await self.sink.publish(event)
        except Exception:  # the stream is best effort; the journal below is not
            log.warning("status hub publish failed", extra={"order_id": event.order_id, "seq": event.seq}, exc_info=True)
        self.order = self.order.apply(event)
        self.seq = event.seq
        try:
            await self.active.update(self.order)
        except StoreUnavailable:
            log.warning("redis update failed; continuing", extra={"order_id": event.order_id})
        await self._persist(event)
        if is_terminal(status):
            try:
                await self.active.finish(self.order)
            except StoreUnavailable:
                log.warning("redis finish failed; reconciliation will drop it", extra={"order_id": event.order_id})
        return self.order

    async def _persist(self, event: OrderEvent) -> None:
        """Write to the journal, waiting out a PostgreSQL outage rather than losing the event."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.journal.record(self.order, event)
                return
            except StoreUnavailable as exc:
                delay = self.store_retry.delay_after(min(attempt, 6))
                log.warning(
                    "journal write failed; retrying",
                    extra={"order_id": event.order_id, "seq": event.seq, "attempt": attempt, "error": str(exc)},
                )
                await self.clock.sleep(delay)


@dataclass
class OrderWorkflow:
    venues: Mapping[VenueName, Venue]
    sink: EventSink
    journal: OrderJournal
    active: ActiveOrders
    clock: Clock
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    store_retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(base_delay_s=0.2, max_delay_s=5.0))
    max_price_impact_pct: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    async def run(self, order_id: str) -> Order | None:
        """Drive the order to a terminal state. Safe to call again for the same order (resume)."""
        loaded = await self._load(order_id)
        if loaded is None:
            log.error("order to execute not found", extra={"order_id": order_id})
            return None
        order, seq = loaded
        if is_terminal(order.status):
            return order
        run = OrderRun(order, seq, self.sink, self.journal, self.active, self.clock, self.store_retry)
        resumed = order.status is not S.PENDING
        if resumed:
            log.info("resuming order", extra={"order_id": order_id, "status": order.status.value, "attempts": order.attempts})
        attempt = order.attempts
        failures = 0
        last_error: str | None = None
        while True:
            try:
                if resumed or failures:
                    # A swap may have landed already (crash mid-swap, lost confirmation): look before acting.
                    found = await self._existing_swap(order_id)
                    if found is not None:
                        return await self._adopt(run, found)
                attempt += 1
                await run.emit(S.ROUTING, attempt=attempt, error=last_error)
                decision = await self._route(run.order)
                await run.emit(S.BUILDING, routing_decision=decision)
                quote = next(q for q in decision.quotes if q.venue is decision.venue)
                await run.emit(S.SUBMITTED)
                swap = await self.venues[decision.venue].swap(order_id, quote)
                return await run.emit(
                    S.CONFIRMED,
                    tx_hash=swap.tx_hash,
                    execution_price=swap.execution_price,
                    execution_amount=swap.amount_out,
                )
            except (VenueError, NoRouteError) as exc:
                failures += 1
                last_error = str(exc)
                if not exc.transient or not self.retry.should_retry(failures):
                    reason = last_error if not exc.transient else f"{last_error} (after {failures} attempts)"
                    return await run.emit(S.FAILED, failure_reason=reason)
                delay = self.retry.delay_after(failures, self.rng)
                log.info(
                    "attempt failed; backing off", extra={"order_id": order_id, "attempt": attempt, "delay_s": delay, "error": last_error}
                )
                await self.clock.sleep(delay)

    async def fail(self, order_id: str, reason: str) -> Order | None:
        """Move an open order straight to FAILED (used when it cannot be executed at all)."""
        loaded = await self._load(order_id)
        if loaded is None or is_terminal(loaded[0].status):
            return loaded[0] if loaded else None
        run = OrderRun(loaded[0], loaded[1], self.sink, self.journal, self.active, self.clock, self.store_retry)
        try:
            found = await self._existing_swap(order_id)
        except (VenueError, NoRouteError):
            found = None
        if found is not None:
            return await self._adopt(run, found)
        return await run.emit(S.FAILED, failure_reason=reason)

    async def _adopt(self, run: OrderRun, swap: SwapResult) -> Order:
        """Confirm the order with a swap found at a venue, walking the lifecycle's remaining steps."""
        log.info(
            "adopting swap found at venue",
            extra={"order_id": swap.order_id, "venue": swap.venue.value, "tx_hash": swap.tx_hash, "found_status": run.order.status.value},
        )
        if run.order.status is S.PENDING:
            await run.emit(S.ROUTING, attempt=run.order.attempts + 1)
        if run.order.status is S.ROUTING:
            await run.emit(S.BUILDING)
        if run.order.status is S.BUILDING:
            await run.emit(S.SUBMITTED)
        return await run.emit(S.CONFIRMED, tx_hash=swap.tx_hash, execution_price=swap.execution_price, execution_amount=swap.amount_out)

    async def _load(self, order_id: str) -> tuple[Order, int] | None:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self.journal.load(order_id)
            except StoreUnavailable:
                await self.clock.sleep(self.store_retry.delay_after(min(attempt, 6)))

    async def _route(self, order: Order) -> RoutingDecision:
        """Ask every venue at once; the wall time is that of the slowest single quote."""
        names = list(self.venues)
        results = await asyncio.gather(
            *(self.venues[name].quote(order.token_in, order.token_out, order.amount) for name in names),
            return_exceptions=True,
        )
        outcomes: dict[VenueName, DexQuote | VenueError] = {}
        for name, result in zip(names, results, strict=True):
            if isinstance(result, VenueError | DexQuote):
                outcomes[name] = result
            elif isinstance(result, BaseException):
                raise result
        return choose_route(outcomes, self.max_price_impact_pct)

    async def _existing_swap(self, order_id: str) -> SwapResult | None:
        """Before (re)submitting, ask every venue whether this order already swapped there."""
        found = await asyncio.gather(*(venue.find_swap(order_id) for venue in self.venues.values()))
        return next((swap for swap in found if swap is not None), None)
