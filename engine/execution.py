"""Running one order: route, build, submit, confirm, with retries. The heart of the engine.

:class:`OrderWorkflow` holds no Ray, Redis or PostgreSQL code: venues, the event
sink, the journal and the active-order cache are ports handed in. Every transition
goes through :meth:`OrderRun.emit`, which checks it against the lifecycle table and
hands it to the order's delivery chain: published (live) first, then the hot copy and
the journal, beside the workflow's own venue calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.clock import Clock
from engine.errors import InsufficientLiquidity, NoRouteError, SlippageExceeded, StaleRun, StoreUnavailable, VenueError
from engine.lifecycle import NOT_STARTED, check_transition, is_terminal
from engine.models import DexQuote, Order, OrderEvent, OrderStatus, RoutingDecision, SwapResult, VenueName
from engine.order_types import policy_of
from engine.ports import ActiveOrders, EventSink, FencedJournal, OrderJournal, PoolView, RunObserver, TriggerSource, Venue, Watcher
from engine.retry import RetryPolicy
from engine.routing import choose_route
from engine.settlement import LegRequest, NotAllowedToSign, Settler
from engine.split import Output

log = logging.getLogger("engine.execution")

S = OrderStatus


def _transactions(swaps: list[SwapResult]) -> list[str]:
    """The swaps' transactions, each once (every leg of a split lands in the order's one transaction)."""
    return list(dict.fromkeys(s.tx_hash for s in swaps))


@dataclass
class OrderRun:
    """One order being worked on: its current state and the seq of its last event.

    :meth:`emit` moves the state at once and hands the event to two writers that run beside
    the workflow: the hub publish (live; sent first), and the hot copy with the journal. Each
    writer sends, in seq order, every event emitted since its last write, so events that come
    quickly one after another (no venue latency in between) go in one write: one journal
    statement row for the order's state, one hot-copy SET. :meth:`settled` waits for the stores.
    The workflow waits where it matters: before a swap (the decision must be durable) and
    before it returns (the state must be).

    **Fencing.** A run claimed from a :class:`engine.ports.FencedJournal` holds an ``epoch``; every
    write passes it, and once another run has claimed the order the journal refuses them
    (:class:`StaleRun`): the run stops publishing and writing, and its next step raises. A terminal
    event is published and written to the hot copy only once the journal has it, so no reader sees
    a terminal state that a newer run could contradict. :meth:`may_sign` asks the journal, right
    before anything irreversible (a swap, a signature), whether this run still holds the order.
    """

    order: Order
    seq: int
    sink: EventSink
    journal: OrderJournal
    active: ActiveOrders
    clock: Clock
    store_retry: RetryPolicy
    observer: RunObserver | None = None
    epoch: int | None = None
    """The run's fencing token (None: the journal does not fence runs)."""
    stale: bool = False
    """Set once the journal refused a write of this run: another run holds the order."""
    _unpublished: list[OrderEvent] = field(default_factory=list)
    _unstored: list[OrderEvent] = field(default_factory=list)
    _claims: dict[int, asyncio.Future[bool]] = field(default_factory=dict)  # seq -> is the order claimed
    _publisher: asyncio.Future[None] | None = None
    _storer: asyncio.Future[None] | None = None

    async def emit(self, status: OrderStatus, **fields: Any) -> Order:
        self._emit(status, fields)
        return self.order

    async def emit_claiming(self, status: OrderStatus, **fields: Any) -> bool:
        """Emit an event whose write also claims the order for submission, and wait until it is
        durable. False if a cancel was requested first (the order must not be submitted)."""
        claimed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._claims[self.seq + 1] = claimed
        self._emit(status, fields)
        return await claimed

    async def may_sign(self) -> bool:
        """Whether this run still holds the order (no newer run claimed it): asked right before a swap
        is submitted or a transaction signed, so a zombie run (its executor reported lost but still
        running) cannot act. True when the journal does not fence runs."""
        if self.stale:
            return False
        if self.epoch is None or not isinstance(self.journal, FencedJournal):
            return True
        if not await self.journal.assert_current(self.order.order_id, self.epoch):
            self.stale = True
        return not self.stale

    async def set_triggered(self, at_ms: float | None) -> None:
        """Mark the order triggered (or re-armed), as this run: refused once it is stale."""
        if self.stale:
            raise StaleRun(self.order.order_id, self.epoch or 0)
        await self.journal.set_triggered(self.order.order_id, at_ms, epoch=self.epoch)

    def _emit(self, status: OrderStatus, fields: dict[str, Any]) -> None:
        if self.stale:
            raise StaleRun(self.order.order_id, self.epoch or 0)
        check_transition(self.order.status, status)
        event = OrderEvent(order_id=self.order.order_id, seq=self.seq + 1, status=status, at=self.clock.epoch_ms(), **fields)
        self.order = self.order.apply(event)
        self.seq = event.seq
        if self.observer is not None:
            self.observer.transition(self.order, event)
        # Publish first (the hub call is sent before the writes), then store; neither waits for the other.
        # A terminal event is published once it is stored (_store does it).
        if not is_terminal(status):
            self._publish_later([event])
        self._unstored.append(event)
        if self._storer is None or self._storer.done():
            self._storer = asyncio.ensure_future(self._store())

    async def settled(self) -> None:
        """Wait until every event emitted so far is in Redis and in PostgreSQL (the hub gets it
        on its own writer: a slow hub never holds up an order)."""
        if self._storer is not None:
            await asyncio.shield(self._storer)

    def _publish_later(self, events: list[OrderEvent]) -> None:
        self._unpublished.extend(events)
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.ensure_future(self._publish())

    async def _publish(self) -> None:
        while self._unpublished and not self.stale:
            events, self._unpublished = self._unpublished, []
            try:
                await asyncio.gather(*(self.sink.publish(event, epoch=self.epoch) for event in events))
            except Exception:  # the stream is best effort; the journal is not
                log.warning("status hub publish failed", extra={"order_id": self.order.order_id, "seq": events[-1].seq}, exc_info=True)

    async def _store(self) -> None:
        while self._unstored:
            events, self._unstored = self._unstored, []
            order = self.order  # the state after the last of them: they are every event emitted so far
            claims = [self._claims.pop(e.seq) for e in events if e.seq in self._claims]
            try:
                if is_terminal(order.status):  # durable first: no reader may see a terminal state the journal refused
                    claimed = await self._persist(order, events, bool(claims))
                    await self._hot_copy(order)
                    self._publish_later([e for e in events if is_terminal(e.status)])
                else:
                    _, claimed = await asyncio.gather(self._hot_copy(order), self._persist(order, events, bool(claims)))
            except BaseException as exc:  # whoever waits for a claim learns why it never came
                if isinstance(exc, StaleRun):
                    self.stale = True
                    self._unpublished.clear()
                    self._unstored.clear()
                for future in [*claims, *self._claims.values()]:
                    if not future.done():
                        future.set_exception(exc)
                raise
            for future in claims:
                future.set_result(claimed)

    async def _hot_copy(self, order: Order) -> None:
        try:
            if is_terminal(order.status):
                await self.active.finish(order, epoch=self.epoch)
            else:
                await self.active.update(order, epoch=self.epoch)
        except StoreUnavailable:
            log.warning("redis update failed; continuing (reconciliation rebuilds it)", extra={"order_id": order.order_id})

    async def _persist(self, order: Order, events: list[OrderEvent], claim: bool) -> bool:
        """Write to the journal, waiting out a PostgreSQL outage rather than losing the events."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self.journal.record(order, events, claim, epoch=self.epoch)
            except StoreUnavailable as exc:
                delay = self.store_retry.delay_after(min(attempt, 6))
                log.warning(
                    "journal write failed; retrying",
                    extra={"order_id": order.order_id, "seq": events[-1].seq, "attempt": attempt, "error": str(exc)},
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
    watcher: Watcher | None = None
    split_routing: bool = True
    observer: RunObserver | None = None
    settlement: Settler | None = None
    """Lands swaps (:class:`engine.settlement.Settlement`: the chain's protocol); needed to execute."""
    trigger_max_age_ms: float = 0.0
    """A fired order routes on the pool states that fired it while they are this fresh (0: always quote)."""

    async def run(self, order_id: str) -> Order | None:
        """Move the order as far as it can go now. Safe to call again for the same order (resume).

        A cancelled or expired order is closed; a LIMIT/SNIPER order not yet triggered is
        handed to the watcher (``waiting``); anything else runs the market path.
        """
        loaded = await self._claim(order_id)
        if loaded is None:
            log.error("order to execute not found", extra={"order_id": order_id})
            return None
        order, seq, epoch = loaded
        if is_terminal(order.status):
            # Queued again by a race (or its Redis finish was lost): make the hot copy terminal too.
            with contextlib.suppress(StoreUnavailable):
                await self.active.finish(order)
            return order
        run = OrderRun(order, seq, self.sink, self.journal, self.active, self.clock, self.store_retry, self.observer, epoch)
        try:
            if order.cancel_requested:
                return await self._close(run, S.CANCELLED, "cancelled by the client")
            if order.status in NOT_STARTED and order.expires_at is not None and self.clock.epoch_ms() >= order.expires_at:
                return await self._close(run, S.EXPIRED, "expired before its condition was met")
            policy = policy_of(order.order_type)
            if policy.waits and order.triggered_at is None and order.status in NOT_STARTED:
                return await self._wait(run, policy.waiting_reason(order))
            return await self._execute(run)
        finally:
            await run.settled()  # returning means the state is durable: the dispatcher may hand the order out again

    async def fail(self, order_id: str, reason: str) -> Order | None:
        """Move an open order straight to FAILED (used when it cannot be executed at all)."""
        loaded = await self._claim(order_id)
        if loaded is None or is_terminal(loaded[0].status):
            return loaded[0] if loaded else None
        run = OrderRun(*loaded[:2], self.sink, self.journal, self.active, self.clock, self.store_retry, self.observer, loaded[2])
        try:
            return await self._fail(run, reason)
        finally:
            await run.settled()

    async def _fail(self, run: OrderRun, reason: str) -> Order:
        """End the order as FAILED, unless its swaps all landed after all (then confirm with them).

        A split order some of whose legs landed is a partial fill: it fails, and says which
        swaps were made (``txHashes``) so no money moves without the order saying so.
        """
        try:
            found = await self._existing_swaps(run.order.order_id)
        except (VenueError, NoRouteError):
            found = {}
        decision = run.order.routing_decision
        legs = {leg.venue for leg in decision.legs} if decision and decision.legs else set(found)
        if found and legs <= set(found):
            return await self._adopt(run, found)
        if found:
            swaps = sorted(found.values(), key=lambda s: -s.amount_in)
            made = ", ".join(f"{s.venue} {s.amount_in:.6g} {run.order.token_in}" for s in swaps)
            return await run.emit(S.FAILED, failure_reason=f"{reason}; partial fill: {made}", tx_hashes=_transactions(swaps))
        return await run.emit(S.FAILED, failure_reason=reason)

    async def _close(self, run: OrderRun, status: OrderStatus, reason: str) -> Order:
        order = await run.emit(status, reason=reason)
        if self.watcher is not None:
            try:
                await self.watcher.unwatch(order.order_id)
            except Exception:  # the watcher drops terminal orders on its own when they trigger
                log.warning("unwatch failed", extra={"order_id": order.order_id})
        return order

    async def _wait(self, run: OrderRun, reason: str) -> Order:
        if run.order.status is not S.WAITING:
            await run.emit(S.WAITING, reason=reason)
        if self.watcher is None:
            raise RuntimeError("a LIMIT/SNIPER order needs a watcher")
        await run.settled()  # the watcher may trigger it at once: a new run must load it as waiting
        await self.watcher.watch(run.order)
        return run.order

    async def _execute(self, run: OrderRun) -> Order:
        order_id = run.order.order_id
        look_first = run.order.status not in NOT_STARTED  # resumed mid-way: a swap may exist
        if look_first:
            log.info("resuming order", extra={"order_id": order_id, "status": run.order.status.value, "attempts": run.order.attempts})
        attempt = run.order.attempts
        failures = 0
        last_error: str | None = None
        first_minimum: float | None = None  # after a slippage miss, the re-quote must still meet the first quote's minimum
        while True:
            try:
                if look_first:
                    # A swap may have landed already (crash mid-swap, lost confirmation): look before acting.
                    found = await self._existing_swaps(order_id)
                    if found:
                        return await self._adopt(run, found)
                    if await self.journal.cancel_requested(order_id):
                        return await self._close(run, S.CANCELLED, "cancelled by the client")
                attempt += 1
                await run.emit(S.ROUTING, attempt=attempt, error=last_error)
                decision = await self._route(run.order, first_minimum)
                floor = policy_of(run.order.order_type).floor(run.order)
                if first_minimum is None and decision.amount_out < floor:
                    # Triggered, but the price moved away before routing: wait again.
                    await run.set_triggered(None)
                    run.order = run.order.model_copy(update={"triggered_at": None})
                    return await self._wait(run, "price moved away from the limit before execution; waiting again")
                if first_minimum is not None and decision.amount_out < first_minimum:
                    return await run.emit(
                        S.FAILED,
                        routing_decision=decision,
                        failure_reason=(
                            f"slippage exceeded: re-quote gives {decision.amount_out:.6g} {run.order.token_out}, "
                            f"below the minimum {first_minimum:.6g}"
                        ),
                    )
                # The decision must be durable before any swap (a resumed run swaps its missing legs),
                # and the same write claims the order for submission unless a cancel came first.
                if not await run.emit_claiming(S.BUILDING, routing_decision=decision):
                    return await self._close(run, S.CANCELLED, "cancelled by the client")
                await run.emit(S.SUBMITTED, routing_decision=decision)
                swaps = await self._swap_legs(run, decision)
                return await self._confirm(run, swaps)
            except SlippageExceeded as exc:
                look_first = True  # another leg may have landed
                if first_minimum is not None:
                    return await self._fail(run, str(exc))
                decision_now = run.order.routing_decision
                first_minimum = decision_now.min_amount_out if decision_now else 0.0
                last_error = f"{exc}; re-quoting once"
            except (VenueError, NoRouteError) as exc:
                look_first = True
                failures += 1
                last_error = str(exc)
                if not exc.transient or not self.retry.should_retry(failures):
                    reason = last_error if not exc.transient else f"{last_error} (after {failures} attempts)"
                    return await self._fail(run, reason)
                delay = self.retry.delay_after(failures, self.rng)
                log.info(
                    "attempt failed; backing off", extra={"order_id": order_id, "attempt": attempt, "delay_s": delay, "error": last_error}
                )
                await self.clock.sleep(delay)

    async def _swap_legs(self, run: OrderRun, decision: RoutingDecision) -> list[SwapResult]:
        """Swap every leg at once; each leg keeps its share of the order's minimum output. With a
        chain, every leg goes in the order's one transaction (all land or none)."""
        order_id = run.order.order_id
        quotes = {q.venue: q for q in decision.quotes}
        ratio = decision.min_amount_out / decision.amount_out if decision.amount_out > 0 else 0.0
        requests = [
            LegRequest(
                quotes[leg.venue].model_copy(update={"amount_in": leg.amount_in, "amount_out": leg.amount_out}), leg.amount_out * ratio
            )
            for leg in decision.legs
        ]
        settlement = self._settlement()
        try:
            swaps = await settlement.settle(order_id, run.order.account, requests, run.may_sign, run.epoch)
        except NotAllowedToSign as exc:  # a newer run holds the order: this one signed nothing
            raise StaleRun(order_id, run.epoch or 0) from exc
        await settlement.checkpoint("before_confirm", order_id)
        return swaps

    def _settlement(self) -> Settler:
        if self.settlement is None:
            raise RuntimeError("executing an order needs a settlement")
        return self.settlement

    async def _confirm(self, run: OrderRun, swaps: list[SwapResult]) -> Order:
        swaps = sorted(swaps, key=lambda s: -s.amount_in)
        amount_in = sum(s.amount_in for s in swaps)
        amount_out = sum(s.amount_out for s in swaps)
        return await run.emit(
            S.CONFIRMED,
            routing_decision=run.order.routing_decision,
            tx_hash=swaps[0].tx_hash,
            tx_hashes=_transactions(swaps),
            execution_price=amount_out / amount_in,
            execution_amount=amount_out,
        )

    async def _adopt(self, run: OrderRun, found: dict[VenueName, SwapResult]) -> Order:
        """Confirm with swaps found at the venues, swapping any leg of the decision still missing."""
        log.info(
            "adopting swaps found at venues",
            extra={"order_id": run.order.order_id, "venues": sorted(found), "found_status": run.order.status.value},
        )
        if run.order.status in NOT_STARTED:
            await run.emit(S.ROUTING, attempt=run.order.attempts + 1)
        if run.order.status is S.ROUTING:
            await run.emit(S.BUILDING)
        if run.order.status is S.BUILDING:
            await run.emit(S.SUBMITTED, routing_decision=run.order.routing_decision)
        decision = run.order.routing_decision
        swaps = list(found.values())
        settlement = self._settlement()
        if settlement.one_transaction:  # every leg was in it: what landed is the whole swap
            await settlement.checkpoint("before_confirm", run.order.order_id)
            return await self._confirm(run, swaps)
        missing = [leg for leg in (decision.legs if decision else []) if leg.venue not in found]
        if decision is not None and missing:
            rest = decision.model_copy(update={"legs": missing})
            swaps += await self._swap_legs(run, rest)
        return await self._confirm(run, swaps)

    async def _claim(self, order_id: str) -> tuple[Order, int, int | None] | None:
        """Start a run: claim it (a new epoch) where the journal fences runs, else load the order."""
        attempt = 0
        while True:
            attempt += 1
            try:
                if isinstance(self.journal, FencedJournal):
                    claimed = await self.journal.claim_run(order_id)
                    return (claimed.order, claimed.seq, claimed.epoch) if claimed is not None else None
                loaded = await self.journal.load(order_id)
                return (*loaded, None) if loaded is not None else None
            except StoreUnavailable:
                await self.clock.sleep(self.store_retry.delay_after(min(attempt, 6)))

    async def _route(self, order: Order, first_minimum: float | None) -> RoutingDecision:
        """Route a fired order on the pool states that fired it, if fresh enough (no quote round trip:
        settlement re-prices at the venue and refuses below the minimum, so the slippage bound holds);
        else ask every venue at once (quotes, and pool states for splitting); wall time is one quote's."""
        if first_minimum is None:
            decision = await self._route_on_trigger(order)
            if decision is not None:
                return decision
        names = list(self.venues)
        quote_calls = [self.venues[name].quote(order.token_in, order.token_out, order.amount) for name in names]
        view_calls = [self.venues[name].snapshot(order.token_in, order.token_out) for name in names] if self.split_routing else []
        results = await asyncio.gather(*quote_calls, *view_calls, return_exceptions=True)
        outcomes: dict[VenueName, DexQuote | VenueError] = {}
        for name, result in zip(names, results[: len(names)], strict=True):
            if isinstance(result, VenueError | DexQuote):
                outcomes[name] = result
            elif isinstance(result, BaseException):
                raise result
        curves: dict[VenueName, Output] = {}
        for name, view in zip(names, results[len(names) :], strict=False):
            if isinstance(view, PoolView):
                curves[name] = functools.partial(view.output, order.token_in)
        return choose_route(
            outcomes,
            self.max_price_impact_pct,
            curves=curves or None,
            slippage_bps=order.slippage_bps,
            min_out_floor=max(policy_of(order.order_type).floor(order), first_minimum or 0.0),
            now_ms=self.clock.epoch_ms(),
        )

    async def _route_on_trigger(self, order: Order) -> RoutingDecision | None:
        """The route over the trigger's fresh pool states, or None (ask the venues)."""
        if self.trigger_max_age_ms <= 0 or order.triggered_at is None or not isinstance(self.watcher, TriggerSource):
            return None
        try:
            trigger = await self.watcher.trigger(order.order_id)
        except Exception:  # the watcher is restarting: quote instead
            log.warning("trigger unavailable; quoting", extra={"order_id": order.order_id}, exc_info=True)
            return None
        if trigger is None:
            return None
        now_ms = self.clock.epoch_ms()
        seen = {name: s for name, s in trigger.fresh(now_ms, self.trigger_max_age_ms).items() if name in self.venues}
        outcomes: dict[VenueName, DexQuote | VenueError] = {}
        for name, s in seen.items():
            try:
                outcomes[name] = s.view.quote(name, order.token_in, order.token_out, order.amount, s.at_ms)
            except (ValueError, ArithmeticError) as exc:  # past the pool's depth
                outcomes[name] = InsufficientLiquidity(name, str(exc))
        if not any(isinstance(o, DexQuote) for o in outcomes.values()):
            return None
        curves: dict[VenueName, Output] = {name: functools.partial(s.view.output, order.token_in) for name, s in seen.items()}
        floor = policy_of(order.order_type).floor(order)
        try:
            decision = choose_route(
                outcomes,
                self.max_price_impact_pct,
                curves=curves if self.split_routing else None,
                slippage_bps=order.slippage_bps,
                min_out_floor=floor,
                now_ms=now_ms,
            )
        except NoRouteError:
            return None
        return decision if decision.amount_out >= floor else None  # below its limit on this state: ask the venues

    async def _existing_swaps(self, order_id: str) -> dict[VenueName, SwapResult]:
        """Before (re)submitting, ask whether this order already swapped (the chain, about the
        transaction persisted with the order)."""
        return await self._settlement().landed(order_id)
