"""The settlement store in PostgreSQL: each order's signed transaction, saved before it is sent.

Implements :class:`engine.settlement.SettlementStore`. The save is a compare-and-set on the stored
signature, so of two runs that both judged a transaction dead only one may store (and send) a new one.
Loads and first saves made at about the same time (an executor's many orders) share one statement.
"""

from __future__ import annotations

import asyncpg

from engine.adapters.postgres import guard
from engine.batching import Coalescer
from engine.settlement import PendingTx

_INSERT_MANY = """
INSERT INTO order_settlements (order_id, signature, signed_tx, last_valid_height, legs_asked_at, legs_agreed_at)
SELECT o, s, t, h, to_timestamp(a / 1000.0), to_timestamp(g / 1000.0)
FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bigint[], $5::float8[], $6::float8[]) AS u(o, s, t, h, a, g)
ON CONFLICT (order_id) DO NOTHING RETURNING order_id, signature
"""


class PostgresSettlementStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._loads: Coalescer[str, PendingTx | None] = Coalescer(self._load_many, max_batch=256, max_in_flight=4)
        self._inserts: Coalescer[PendingTx, bool] = Coalescer(self._insert_many, max_batch=256, max_in_flight=4)

    async def load(self, order_id: str) -> PendingTx | None:
        return await self._loads.submit(order_id)

    async def _load_many(self, order_ids: list[str]) -> list[PendingTx | None]:
        async def op() -> list[asyncpg.Record]:
            async with self.pool.acquire() as conn:
                rows: list[asyncpg.Record] = await conn.fetch(
                    "SELECT order_id, signature, signed_tx, last_valid_height FROM order_settlements WHERE order_id = ANY($1::text[])",
                    order_ids,
                )
                return rows

        found = {
            row["order_id"]: PendingTx(row["order_id"], row["signature"], bytes(row["signed_tx"]), int(row["last_valid_height"]))
            for row in await guard(op)
        }
        return [found.get(order_id) for order_id in order_ids]

    async def _insert_many(self, items: list[PendingTx]) -> list[bool]:
        windows = [p.venue_window_ms or (None, None) for p in items]

        async def op() -> list[asyncpg.Record]:
            async with self.pool.acquire() as conn:
                rows: list[asyncpg.Record] = await conn.fetch(
                    _INSERT_MANY,
                    [p.order_id for p in items],
                    [p.signature for p in items],
                    [p.raw for p in items],
                    [p.last_valid_height for p in items],
                    [w[0] for w in windows],
                    [w[1] for w in windows],
                )
                return rows

        stored = {(row["order_id"], row["signature"]) for row in await guard(op)}
        return [(p.order_id, p.signature) in stored for p in items]

    async def save(self, pending: PendingTx, replaces: str | None) -> bool:
        if replaces is None:  # the order's first transaction: saved with others' first ones
            return await self._inserts.submit(pending)
        window: tuple[float | None, float | None] = pending.venue_window_ms or (None, None)

        async def op() -> str | None:
            async with self.pool.acquire() as conn:
                replaced: str | None = await conn.fetchval(
                    "UPDATE order_settlements SET signature = $2, signed_tx = $3, last_valid_height = $4, replaced = replaced + 1, "
                    "saved_at = now(), legs_asked_at = to_timestamp($6 / 1000.0), legs_agreed_at = to_timestamp($7 / 1000.0) "
                    "WHERE order_id = $1 AND signature = $5 RETURNING signature",
                    pending.order_id,
                    pending.signature,
                    pending.raw,
                    pending.last_valid_height,
                    replaces,
                    *window,
                )
                return replaced

        return await guard(op) is not None

    async def signatures(self, order_ids: list[str]) -> dict[str, str]:
        """The stored signature of each order that has one."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT order_id, signature FROM order_settlements WHERE order_id = ANY($1::text[])", order_ids)
        return {row["order_id"]: row["signature"] for row in rows}
