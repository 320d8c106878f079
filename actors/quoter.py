"""RaydiumQuoter and MeteoraQuoter: one simulated venue each, its swap ledger in PostgreSQL."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg

from engine.adapters.postgres import PostgresLedger, create_pool
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
        self._settings = settings
        self._database_url = database_url
        self._venue: SimulatedVenue | None = None
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def _ready(self) -> SimulatedVenue:
        if self._venue is None:
            async with self._lock:
                if self._venue is None:
                    self._pool = await create_pool(self._database_url, min_size=1, max_size=4)
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
        fails answers its error in its slot (a venue error as itself, anything else as transient)."""
        venue = await self._ready()
        calls = [getattr(venue, method)(*args) for method, args in requests if method in _READS]
        if len(calls) != len(requests):
            raise ValueError(f"read_many takes only {sorted(_READS)}")
        results = await asyncio.gather(*calls, return_exceptions=True)
        return [
            TransientVenueError(self.venue_name.value, f"{type(r).__name__}: {r}")
            if isinstance(r, BaseException) and not isinstance(r, VenueError)
            else r
            for r in results
        ]

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
