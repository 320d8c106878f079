"""VenueQuoter: one registered venue behind an actor (RaydiumQuoter, MeteoraQuoter, ...).

The actor builds its venue with the registry's factory (:mod:`venues.registry`) on first use and
only translates calls; it never names a venue kind. It keeps the venue's circuit breaker
(:class:`engine.circuit_breaker.CircuitBreaker`): while it is open, quotes and snapshots are answered
at once with a transient venue error, so routing uses the other venues. Settling a leg (agreeing its
terms, co-signing) is never refused (an order already routed here must land), but its faults count.
A venue that pushes its pool changes (an account subscription) has them forwarded to the subscribed
price watcher, changes that come together in one call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

from actors.chain_node import chain_of
from engine.adapters.stores import urls
from engine.batching import Pacer
from engine.circuit_breaker import CircuitBreaker
from engine.clock import SystemClock
from engine.errors import EngineError, InsufficientLiquidity, TransientVenueError, VenueError
from engine.gc_tuning import tune_garbage_collection
from engine.instruments import REGISTRY, measured
from engine.logs import setup_logging
from engine.metrics import Snapshot
from engine.models import DexQuote
from engine.ports import PoolView, Venue
from engine.settings import Settings
from engine.settlement import LegRequest, LegTerms, SettlingVenue
from settlement.assembler import commit_signed
from venues.registry import VenueContext, VenueSpec
from venues.simulated import SimulatedVenue

_READS = frozenset({"quote", "snapshot", "pairs"})
T = TypeVar("T")
_GATED = frozenset({"quote", "snapshot"})
"""Calls an open breaker refuses: the ones routing makes before it chooses a venue."""


def is_fault(result: object) -> bool:
    """Does this outcome say the venue is unwell? A venue's own answer (no pool, slippage, too little
    liquidity) says it is working; a timeout, an RPC fault or an unexpected error says it is not."""
    if not isinstance(result, BaseException):
        return False
    answered = isinstance(result, InsufficientLiquidity) or (isinstance(result, VenueError) and not result.transient)
    return not answered


class NotSimulated(EngineError):
    """A simulation-admin call reached a venue that is not simulated."""

    def __init__(self, venue: str) -> None:
        super().__init__(venue)
        self.venue = venue

    def __str__(self) -> str:
        return f"{self.venue} is not a simulated venue"


class VenueQuoter:
    def __init__(self, settings: Settings, spec: VenueSpec, chain: Any = None) -> None:
        setup_logging(settings.log_level)
        tune_garbage_collection()
        self._settings = settings
        self._spec = spec
        self._chain = chain
        self._venue: Venue | None = None
        self._lock = asyncio.Lock()
        self._breaker = CircuitBreaker(
            window_s=settings.venue_breaker_window_s,
            min_calls=settings.venue_breaker_min_calls,
            error_rate=settings.venue_breaker_error_rate,
            cooldown_s=settings.venue_breaker_cooldown_s,
        )
        self._subscriber: Any = None
        self._changes: dict[tuple[str, str], tuple[Callable[[], PoolView], float]] = {}
        self._forwarding: asyncio.Task[None] | None = None
        self._push_pacer = Pacer(settings.batch_window_ms / 1000)

    async def _ready(self) -> Venue:
        if self._venue is None:
            async with self._lock:
                if self._venue is None:
                    database_url, _ = urls(self._settings)
                    chain, faucet = chain_of(self._settings, self._chain) if self._chain or self._settings.chain_rpc_url else (None, None)
                    context = VenueContext(self._settings, database_url, SystemClock(), chain, faucet)
                    self._venue = await self._spec.factory()(self._spec.name, context)
        return self._venue

    def _open_error(self) -> TransientVenueError:
        return TransientVenueError(self._spec.name, f"circuit open after repeated faults; tried again in {self._breaker.cooldown_s:g} s")

    def _record(self, result: object) -> None:
        fault = is_fault(result)
        self._breaker.record(time.monotonic(), not fault, f"{type(result).__name__}: {result}" if fault else None)

    async def _counted(self, call: Any) -> Any:
        """Await ``call``, counting its outcome in the breaker."""
        try:
            result = await call
        except BaseException as exc:
            self._record(exc)
            raise
        self._record(result)
        return result

    async def quote(self, token_in: str, token_out: str, amount: float) -> DexQuote:
        venue = await self._ready()
        if not self._breaker.allow(time.monotonic()):
            raise self._open_error()
        result: DexQuote = await self._counted(self._measured("quote", venue.quote(token_in, token_out, amount)))
        return result

    async def snapshot(self, token_in: str, token_out: str) -> PoolView | None:
        venue = await self._ready()
        if not self._breaker.allow(time.monotonic()):
            raise self._open_error()
        result: PoolView | None = await self._counted(self._measured("snapshot", venue.snapshot(token_in, token_out)))
        return result

    def breaker_state(self) -> dict[str, Any]:
        """The venue's circuit breaker (for /readyz and metrics): state, calls and errors in the window, trips."""
        return {"venue": self._spec.name, **self._breaker.snapshot(time.monotonic())}

    async def pairs(self) -> frozenset[tuple[str, str]]:
        return await self._measured("pairs", (await self._ready()).pairs())

    def _measured(self, operation: str, call: Awaitable[T]) -> Awaitable[T]:
        """The venue call, counted by outcome and timed (``oee_venue_requests_total``, ``oee_venue_request_seconds``)."""
        return measured(self._spec.name, operation, call)

    async def read_many(self, requests: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Several reads (``quote``, ``snapshot``, ``pairs``) in one call, run at once. A
        read that fails answers its error in its slot (a venue error as itself, anything else as transient).

        Snapshots of one pair asked in the same call are one read: every order routed now sees the
        same pool state, copied once and sent once (pickling keeps one copy of a repeated object).
        """
        venue = await self._ready()
        if any(method not in _READS for method, _ in requests):
            raise ValueError(f"read_many takes only {sorted(_READS)}")
        allowed = not any(method in _GATED for method, _ in requests) or self._breaker.allow(time.monotonic())
        snapshots: dict[frozenset[str], asyncio.Future[Any]] = {}
        calls: list[Awaitable[Any]] = []
        for method, args in requests:
            if method in _GATED and not allowed:
                calls.append(self._refused())
            elif method == "snapshot":
                pair = frozenset(args)
                if pair not in snapshots:
                    snapshots[pair] = asyncio.ensure_future(self._measured("snapshot", venue.snapshot(*args)))
                calls.append(asyncio.shield(snapshots[pair]))
            else:
                calls.append(self._measured(method, getattr(venue, method)(*args)))
        results = await asyncio.gather(*calls, return_exceptions=True)
        for (method, _), result in zip(requests, results, strict=True):
            if allowed or method not in _GATED:
                self._record(result)
        return [self._answer(r) for r in results]

    async def _refused(self) -> Any:
        raise self._open_error()

    def _answer(self, result: Any) -> Any:
        if isinstance(result, BaseException) and not isinstance(result, VenueError):
            return TransientVenueError(self._spec.name, f"{type(result).__name__}: {result}")
        return result

    async def commit_many(self, requests: list[tuple[str, DexQuote, float]]) -> AsyncIterator[list[tuple[int, Any]]]:
        """Several legs (``order_id``, quote, minimum output) agreed in one call, at once; yields
        ``(index, terms or error)`` as each is agreed, so a quick one is not held up by a slow one."""
        venue = await self._ready()
        if not hasattr(venue, "commit_leg"):
            raise NotSimulated(self._spec.name)
        async for answers in self._as_done([self._measured("swap", venue.commit_leg(*request)) for request in requests]):
            yield answers

    async def commit_signed_many(self, requests: list[tuple[str, DexQuote, float, str, str]]) -> AsyncIterator[list[tuple[int, Any]]]:
        """Several one-leg orders (``order_id``, quote, minimum output, trader, blockhash) agreed and their
        transactions co-signed, one call for all; yields ``(index, (terms, signature) or error)`` as each is done."""
        venue = await self._ready()
        if not hasattr(venue, "commit_leg"):
            raise NotSimulated(self._spec.name)
        calls = [
            self._measured("swap", commit_signed(cast(SettlingVenue, venue), order_id, LegRequest(quote, minimum), trader, blockhash))
            for order_id, quote, minimum, trader, blockhash in requests
        ]
        async for answers in self._as_done(calls):
            yield answers

    async def _as_done(self, calls: list[Awaitable[Any]]) -> AsyncIterator[list[tuple[int, Any]]]:
        running = {asyncio.ensure_future(call): index for index, call in enumerate(calls)}
        pacer = Pacer(self._settings.batch_window_ms / 1000)
        while running:
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            await pacer.turn()  # legs agreed within a window share one answer
            answers = []
            for task in [t for t in running if t.done()]:
                index = running.pop(task)
                outcome = task.exception() or task.result()
                self._record(outcome)
                answers.append((index, self._answer(outcome)))
            pacer.carried(len(answers))
            yield answers

    async def cosign_many(self, requests: list[tuple[str, bytes]]) -> list[Any]:
        """Several co-signatures (``order_id``, message) in one call; a refusal answers in its slot."""
        venue = await self._ready()
        if not hasattr(venue, "cosign"):
            raise NotSimulated(self._spec.name)
        results = await asyncio.gather(*(venue.cosign(order_id, message) for order_id, message in requests), return_exceptions=True)
        return [self._answer(r) for r in results]

    async def commit_leg(self, order_id: str, quote: DexQuote, min_amount_out: float) -> LegTerms:
        """Agree a leg's terms for the order's transaction (settlement); never refused by the breaker."""
        venue = await self._ready()
        if not hasattr(venue, "commit_leg"):
            raise NotSimulated(self._spec.name)
        result: LegTerms = await self._counted(self._measured("swap", venue.commit_leg(order_id, quote, min_amount_out)))
        return result

    async def cosign(self, order_id: str, message: bytes) -> bytes:
        """The venue authority's signature of the order's transaction, once checked."""
        venue = await self._ready()
        if not hasattr(venue, "cosign"):
            raise NotSimulated(self._spec.name)
        signature: bytes = await venue.cosign(order_id, message)
        return signature

    async def _simulated(self) -> SimulatedVenue:
        venue = await self._ready()
        if not isinstance(venue, SimulatedVenue):
            raise NotSimulated(self._spec.name)
        return venue

    async def list_pool(self, base: str, quote: str, reserve_base: float, reserve_quote: float) -> None:
        """Simulation admin: list a new pool (a token launch); answers once its vaults hold the reserves."""
        venue = await self._simulated()
        venue.list_pool(base, quote, reserve_base, reserve_quote)
        await venue.written()

    async def move_price(self, base: str, quote: str, percent: float) -> float:
        """Simulation admin: move a pool's price by ``percent`` (on the chain too); returns the new spot price."""
        venue = await self._simulated()
        spot = venue.move_price(base, quote, percent)
        await venue.written()
        return spot

    async def subscribe(self, watcher: Any) -> bool:
        """Push this venue's pool changes to ``watcher`` (``pools_changed(venue, changes)``), replacing
        any earlier subscriber; False if the venue pushes none (the watcher's poll covers it)."""
        listeners = getattr(await self._ready(), "listeners", None)
        if listeners is None:
            return False
        self._subscriber = watcher
        if self._pushed not in listeners:
            listeners.append(self._pushed)
        return True

    def _pushed(self, base: str, quote: str, state: Callable[[], PoolView]) -> None:
        """A pool changed: note it and forward its state then (fire and forget; the changes of one
        window go together, each pool copied once); a lost push is caught up by the watcher's poll."""
        self._changes[(base, quote)] = (state, time.time() * 1000)
        if self._forwarding is None or self._forwarding.done():
            self._forwarding = asyncio.ensure_future(self._forward())

    async def _forward(self) -> None:
        while self._changes:
            await self._push_pacer.turn()  # at once when quiet; under load, one call per window
            changes, self._changes = self._changes, {}
            self._push_pacer.carried(len(changes))
            if self._subscriber is None:
                continue
            with contextlib.suppress(Exception):
                self._subscriber.pools_changed.remote(self._spec.name, [(b, q, state(), at) for (b, q), (state, at) in changes.items()])

    async def stats(self) -> dict[str, int]:
        return dict(getattr(await self._ready(), "calls", {}))

    def metrics_snapshot(self) -> Snapshot:
        """This process's metrics (the collector asks at each scrape)."""
        return REGISTRY.snapshot(type(self).__name__)

    async def close(self) -> None:
        if self._venue is not None:
            await self._venue.close()


_CLASSES: dict[str, type[VenueQuoter]] = {}


def quoter_class(name: str) -> type[VenueQuoter]:
    """The actor class of venue ``name``: ``RaydiumQuoter`` for raydium (the name Ray shows)."""
    if name not in _CLASSES:
        title = "".join(part.capitalize() for part in name.replace("-", "_").split("_"))
        _CLASSES[name] = type(f"{title}Quoter", (VenueQuoter,), {"__module__": __name__, "__qualname__": f"{title}Quoter"})
    return _CLASSES[name]


RaydiumQuoter = quoter_class("raydium")
MeteoraQuoter = quoter_class("meteora")
