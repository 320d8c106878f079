"""VenueQuoter: one registered venue behind an actor (RaydiumQuoter, MeteoraQuoter, ...).

The actor builds its venue with the registry's factory (:mod:`venues.registry`) on first use and
only translates calls; it never names a venue kind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from engine.adapters.stores import urls
from engine.batching import Pacer
from engine.clock import SystemClock
from engine.errors import EngineError, TransientVenueError, VenueError
from engine.gc_tuning import tune_garbage_collection
from engine.logs import setup_logging
from engine.models import DexQuote, SwapResult
from engine.ports import PoolView, Venue
from engine.settings import Settings
from venues.registry import VenueContext, VenueSpec
from venues.simulated import SimulatedVenue

_READS = frozenset({"quote", "snapshot", "find_swap", "pairs"})


class NotSimulated(EngineError):
    """A simulation-admin call reached a venue that is not simulated."""

    def __init__(self, venue: str) -> None:
        super().__init__(venue)
        self.venue = venue

    def __str__(self) -> str:
        return f"{self.venue} is not a simulated venue"


class VenueQuoter:
    def __init__(self, settings: Settings, spec: VenueSpec) -> None:
        setup_logging(settings.log_level)
        tune_garbage_collection()
        self._settings = settings
        self._spec = spec
        self._venue: Venue | None = None
        self._lock = asyncio.Lock()

    async def _ready(self) -> Venue:
        if self._venue is None:
            async with self._lock:
                if self._venue is None:
                    database_url, _ = urls(self._settings)
                    context = VenueContext(self._settings, database_url, SystemClock())
                    self._venue = await self._spec.factory()(self._spec.name, context)
        return self._venue

    async def quote(self, token_in: str, token_out: str, amount: float) -> DexQuote:
        return await (await self._ready()).quote(token_in, token_out, amount)

    async def snapshot(self, token_in: str, token_out: str) -> PoolView | None:
        return await (await self._ready()).snapshot(token_in, token_out)

    async def pairs(self) -> frozenset[tuple[str, str]]:
        return await (await self._ready()).pairs()

    async def read_many(self, requests: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Several reads (``quote``, ``snapshot``, ``find_swap``, ``pairs``) in one call, run at once. A
        read that fails answers its error in its slot (a venue error as itself, anything else as transient).

        Snapshots of one pair asked in the same call are one read: every order routed now sees the
        same pool state, copied once and sent once (pickling keeps one copy of a repeated object).
        """
        venue = await self._ready()
        if any(method not in _READS for method, _ in requests):
            raise ValueError(f"read_many takes only {sorted(_READS)}")
        snapshots: dict[frozenset[str], asyncio.Future[Any]] = {}
        calls = []
        for method, args in requests:
            if method == "snapshot":
                pair = frozenset(args)
                if pair not in snapshots:
                    snapshots[pair] = asyncio.ensure_future(venue.snapshot(*args))
                calls.append(asyncio.shield(snapshots[pair]))
            else:
                calls.append(getattr(venue, method)(*args))
        results = await asyncio.gather(*calls, return_exceptions=True)
        return [self._answer(r) for r in results]

    def _answer(self, result: Any) -> Any:
        if isinstance(result, BaseException) and not isinstance(result, VenueError):
            return TransientVenueError(self._spec.name, f"{type(result).__name__}: {result}")
        return result

    async def swap_many(self, requests: list[tuple[str, DexQuote, float]]) -> AsyncIterator[list[tuple[int, Any]]]:
        """Several swaps (``order_id``, quote, minimum output) in one call, run at once; yields
        ``(index, result or error)`` as they land, so a quick swap is not held up by a slow one."""
        venue = await self._ready()
        running = {asyncio.ensure_future(venue.swap(*request)): index for index, request in enumerate(requests)}
        pacer = Pacer(self._settings.batch_window_ms / 1000)
        while running:
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            await pacer.turn()  # swaps landing within a window share one answer
            done = [task for task in running if task.done()]
            answers = []
            for task in done:
                index = running.pop(task)
                answers.append((index, self._answer(task.exception() or task.result())))
            pacer.carried(len(answers))
            yield answers

    async def swap(self, order_id: str, quote: DexQuote, min_amount_out: float = 0.0) -> SwapResult:
        return await (await self._ready()).swap(order_id, quote, min_amount_out)

    async def find_swap(self, order_id: str) -> SwapResult | None:
        return await (await self._ready()).find_swap(order_id)

    async def _simulated(self) -> SimulatedVenue:
        venue = await self._ready()
        if not isinstance(venue, SimulatedVenue):
            raise NotSimulated(self._spec.name)
        return venue

    async def list_pool(self, base: str, quote: str, reserve_base: float, reserve_quote: float) -> None:
        """Simulation admin: list a new pool (a token launch)."""
        (await self._simulated()).list_pool(base, quote, reserve_base, reserve_quote)

    async def move_price(self, base: str, quote: str, percent: float) -> float:
        """Simulation admin: move a pool's price by ``percent``; returns the new spot price."""
        return (await self._simulated()).move_price(base, quote, percent)

    async def stats(self) -> dict[str, int]:
        return dict(getattr(await self._ready(), "calls", {}))

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
