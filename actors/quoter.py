"""RaydiumQuoter and MeteoraQuoter: one simulated venue each, its swap ledger in PostgreSQL."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from actors.gc_tuning import tune_garbage_collection
from engine.adapters.postgres import PostgresLedger, create_pool
from engine.batching import Pacer
from engine.clock import SystemClock
from engine.errors import TransientVenueError, VenueError
from engine.logs import setup_logging
from engine.models import DexQuote, SwapResult, VenueName
from engine.settings import Settings
from engine.venue import PoolView, SimulatedVenue

_READS = frozenset({"quote", "snapshot", "find_swap"})


class _QuoterBase:
    venue_name: VenueName

    def __init__(self, settings: Settings, database_url: str) -> None:
        setup_logging(settings.log_level)
        tune_garbage_collection()
        self._settings = settings
        self._database_url = database_url
        self._venue: SimulatedVenue | None = None
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def _ready(self) -> SimulatedVenue:
        if self._venue is None:
            async with self._lock:
                if self._venue is None:
                    self._pool = await create_pool(self._database_url, min_size=4, max_size=4)  # opened now, not mid-swap
                    seed = self._settings.sim_seed
                    self._venue = SimulatedVenue(
                        name=self.venue_name,
                        clock=SystemClock(),
                        rng=random.Random(f"{seed}:{self.venue_name.value}"),
                        ledger=PostgresLedger(self._pool),
                        timing=self._settings.venue_timing(),
                        seed=seed,
                    )
        return self._venue

    async def quote(self, token_in: str, token_out: str, amount: float) -> DexQuote:
        return await (await self._ready()).quote(token_in, token_out, amount)

    async def snapshot(self, token_in: str, token_out: str) -> PoolView | None:
        return await (await self._ready()).snapshot(token_in, token_out)

    async def read_many(self, requests: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Several reads (``quote``, ``snapshot``, ``find_swap``) in one call, run at once. A read that
        fails answers its error in its slot (a venue error as itself, anything else as transient).

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
            return TransientVenueError(self.venue_name.value, f"{type(result).__name__}: {result}")
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

    async def list_pool(self, base: str, quote: str, reserve_base: float, reserve_quote: float) -> None:
        (await self._ready()).list_pool(base, quote, reserve_base, reserve_quote)

    async def move_price(self, base: str, quote: str, percent: float) -> float:
        return (await self._ready()).move_price(base, quote, percent)

    async def stats(self) -> dict[str, int]:
        return dict((await self._ready()).calls)

    async def find_swap(self, order_id: str) -> SwapResult | None:
        return await (await self._ready()).find_swap(order_id)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


class RaydiumQuoter(_QuoterBase):
    venue_name = VenueName.RAYDIUM


class MeteoraQuoter(_QuoterBase):
    venue_name = VenueName.METEORA
