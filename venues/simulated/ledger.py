"""The simulated venues' swap ledger: where a simulated venue records the swaps it made (the simulated
chain). In PostgreSQL it survives any engine crash; in memory it serves unit tests."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import asyncpg

from engine.adapters.postgres import guard
from engine.batching import Coalescer
from engine.errors import StoreUnavailable
from engine.models import SwapResult, VenueName

log = logging.getLogger("venues.ledger")

T = TypeVar("T")


class SwapLedger(Protocol):
    async def record(self, swap: SwapResult) -> SwapResult:
        """Store ``swap``; if one exists for (venue, order) already, keep and return that one."""
        ...

    async def find(self, venue: VenueName, order_id: str) -> SwapResult | None: ...

    async def close(self) -> None: ...


class InMemoryLedger:
    def __init__(self) -> None:
        self.swaps: dict[tuple[VenueName, str], SwapResult] = {}

    async def record(self, swap: SwapResult) -> SwapResult:
        return self.swaps.setdefault((swap.venue, swap.order_id), swap)

    async def find(self, venue: VenueName, order_id: str) -> SwapResult | None:
        return self.swaps.get((venue, order_id))

    async def close(self) -> None:
        pass


class PostgresLedger:
    """The simulated chain: one row per swap a venue made. Survives any engine crash.

    A chain does not go down with our database, so during a PostgreSQL outage the
    ledger waits (up to ``outage_wait_s``) instead of failing the swap: the swap
    lands late, as on a congested chain. Concurrent lookups and records share one
    statement each (:class:`engine.batching.Coalescer`).
    """

    def __init__(self, pool: asyncpg.Pool, outage_wait_s: float = 120.0, owns_pool: bool = False) -> None:
        self.pool = pool
        self._owns_pool = owns_pool
        self.outage_wait_s = outage_wait_s
        self._finds: Coalescer[tuple[VenueName, str], SwapResult | None] = Coalescer(self._find_many, max_batch=512, max_in_flight=2)
        self._records: Coalescer[SwapResult, SwapResult] = Coalescer(self._record_many, max_batch=512, max_in_flight=2)

    def batching(self) -> dict[str, Coalescer[Any, Any]]:
        return {"finds": self._finds, "records": self._records}

    async def _patient(self, op: Callable[[], Awaitable[T]]) -> T:
        deadline = asyncio.get_running_loop().time() + self.outage_wait_s
        delay = 0.1
        while True:
            try:
                return await guard(op)
            except StoreUnavailable:
                if asyncio.get_running_loop().time() + delay > deadline:
                    raise
                log.warning("ledger waiting for postgres", extra={"retry_in_s": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def record(self, swap: SwapResult) -> SwapResult:
        return await self._records.submit(swap)

    async def _record_many(self, swaps: list[SwapResult]) -> list[SwapResult]:
        async def op() -> set[str]:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(
                    """
                    INSERT INTO venue_swaps (venue, order_id, tx_hash, amount_in, amount_out, price, executed_at, sent_at)
                    SELECT venue, order_id, tx_hash, amount_in, amount_out, price,
                        to_timestamp(executed_ms / 1000.0), to_timestamp(sent_ms / 1000.0)
                    FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::float8[], $6::float8[], $7::float8[], $8::float8[])
                        AS s(venue, order_id, tx_hash, amount_in, amount_out, price, executed_ms, sent_ms)
                    ON CONFLICT (venue, order_id) DO NOTHING
                    RETURNING tx_hash
                    """,
                    [w.venue for w in swaps],
                    [w.order_id for w in swaps],
                    [w.tx_hash for w in swaps],
                    [w.amount_in for w in swaps],
                    [w.amount_out for w in swaps],
                    [w.execution_price for w in swaps],
                    [w.executed_at for w in swaps],
                    [w.sent_at for w in swaps],
                )
            return {row["tx_hash"] for row in rows}

        inserted = await self._patient(op)
        answers: list[SwapResult] = []
        for swap in swaps:
            if swap.tx_hash in inserted:
                answers.append(swap)
            else:  # the venue recorded a swap for this order before: that one stands
                existing = await self.find(swap.venue, swap.order_id)
                assert existing is not None
                answers.append(existing)
        return answers

    async def find(self, venue: VenueName, order_id: str) -> SwapResult | None:
        return await self._finds.submit((venue, order_id))

    async def _find_many(self, keys: list[tuple[VenueName, str]]) -> list[SwapResult | None]:
        async def op() -> list[asyncpg.Record]:
            async with self.pool.acquire() as conn:
                rows: list[asyncpg.Record] = await conn.fetch(
                    "SELECT venue, order_id, tx_hash, amount_in, amount_out, price, extract(epoch from executed_at) * 1000 AS executed_ms, "
                    "extract(epoch from sent_at) * 1000 AS sent_ms "
                    "FROM venue_swaps s JOIN unnest($1::text[], $2::text[]) AS k(venue, order_id) USING (venue, order_id)",
                    [venue for venue, _ in keys],
                    [order_id for _, order_id in keys],
                )
                return rows

        found = {
            (row["venue"], row["order_id"]): SwapResult(
                venue=row["venue"],
                order_id=row["order_id"],
                tx_hash=row["tx_hash"],
                amount_in=row["amount_in"],
                amount_out=row["amount_out"],
                execution_price=row["price"],
                executed_at=float(row["executed_ms"]),
                sent_at=float(row["sent_ms"]) if row["sent_ms"] is not None else None,
            )
            for row in await self._patient(op)
        }
        return [found.get((venue, order_id)) for venue, order_id in keys]

    async def count_for(self, order_id: str) -> int:
        async with self.pool.acquire() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM venue_swaps WHERE order_id = $1", order_id))

    async def close(self) -> None:
        if self._owns_pool:
            await self.pool.close()
