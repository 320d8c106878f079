"""The settlement store in PostgreSQL: each order's signed transaction, saved before it is sent.

Implements :class:`engine.settlement.SettlementStore`. The save is a compare-and-set on the stored
signature, so of two runs that both judged a transaction dead only one may store (and send) a new one.
"""

from __future__ import annotations

import asyncpg

from engine.adapters.postgres import guard
from engine.settlement import PendingTx


class PostgresSettlementStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def load(self, order_id: str) -> PendingTx | None:
        async def op() -> asyncpg.Record | None:
            async with self.pool.acquire() as conn:
                row: asyncpg.Record | None = await conn.fetchrow(
                    "SELECT signature, signed_tx, last_valid_height FROM order_settlements WHERE order_id = $1", order_id
                )
                return row

        row = await guard(op)
        if row is None:
            return None
        return PendingTx(order_id, row["signature"], bytes(row["signed_tx"]), int(row["last_valid_height"]))

    async def save(self, pending: PendingTx, replaces: str | None) -> bool:
        window: tuple[float | None, float | None] = pending.venue_window_ms or (None, None)

        async def op() -> str | None:
            async with self.pool.acquire() as conn:
                if replaces is None:
                    saved: str | None = await conn.fetchval(
                        "INSERT INTO order_settlements (order_id, signature, signed_tx, last_valid_height, legs_asked_at, legs_agreed_at) "
                        "VALUES ($1, $2, $3, $4, to_timestamp($5 / 1000.0), to_timestamp($6 / 1000.0)) "
                        "ON CONFLICT (order_id) DO NOTHING RETURNING signature",
                        pending.order_id,
                        pending.signature,
                        pending.raw,
                        pending.last_valid_height,
                        *window,
                    )
                    return saved
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
