"""The settlement store in PostgreSQL: each order's signed transaction, saved before it is sent.

Implements :class:`engine.settlement.SettlementStore`. The save is a compare-and-set on the stored
signature, so of two runs that both judged a transaction dead only one may store (and send) a new one.
A save with the run's epoch also requires the order's ``run_epoch`` to still be that epoch, reading it
``FOR SHARE``: a newer run's claim (an UPDATE of that row) waits for the save to commit, or the save
sees the claim and stores nothing, so a run claimed away cannot store, and so cannot send. Loads and
first saves made at about the same time (an executor's many orders) share one statement.
"""

from __future__ import annotations

import asyncpg

from engine.adapters.postgres import guard
from engine.batching import Coalescer
from engine.settlement import PendingTx

_HELD = "(e IS NULL OR EXISTS (SELECT 1 FROM orders WHERE orders.order_id = o AND orders.run_epoch = e FOR SHARE))"
"""The saving run still holds the order (no epoch: the store does not fence runs)."""

_INSERT_MANY = f"""
INSERT INTO order_settlements (order_id, signature, signed_tx, last_valid_height, legs_asked_at, legs_agreed_at)
SELECT o, s, t, h, to_timestamp(a / 1000.0), to_timestamp(g / 1000.0)
FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bigint[], $5::float8[], $6::float8[], $7::bigint[]) AS u(o, s, t, h, a, g, e)
WHERE {_HELD}
ON CONFLICT (order_id) DO NOTHING RETURNING order_id, signature
"""

_REPLACE = f"""
UPDATE order_settlements SET signature = $2, signed_tx = $3, last_valid_height = $4, replaced = replaced + 1,
    saved_at = now(), legs_asked_at = to_timestamp($6 / 1000.0), legs_agreed_at = to_timestamp($7 / 1000.0)
FROM (SELECT $1::text AS o, $8::bigint AS e) AS run
WHERE order_settlements.order_id = run.o AND signature = $5 AND {_HELD}
RETURNING signature
"""


class PostgresSettlementStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._loads: Coalescer[str, PendingTx | None] = Coalescer(self._load_many, max_batch=256, max_in_flight=4)
        self._inserts: Coalescer[tuple[PendingTx, int | None], bool] = Coalescer(self._insert_many, max_batch=256, max_in_flight=4)

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

    async def _insert_many(self, runs: list[tuple[PendingTx, int | None]]) -> list[bool]:
        items = [p for p, _ in runs]
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
                    [epoch for _, epoch in runs],
                )
                return rows

        stored = {(row["order_id"], row["signature"]) for row in await guard(op)}
        return [(p.order_id, p.signature) in stored for p in items]

    async def save(self, pending: PendingTx, replaces: str | None, epoch: int | None = None) -> bool:
        if replaces is None:  # the order's first transaction: saved with others' first ones
            return await self._inserts.submit((pending, epoch))
        window: tuple[float | None, float | None] = pending.venue_window_ms or (None, None)

        async def op() -> str | None:
            async with self.pool.acquire() as conn:
                replaced: str | None = await conn.fetchval(
                    _REPLACE, pending.order_id, pending.signature, pending.raw, pending.last_valid_height, replaces, *window, epoch
                )
                return replaced

        return await guard(op) is not None

    async def signatures(self, order_ids: list[str]) -> dict[str, str]:
        """The stored signature of each order that has one."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT order_id, signature FROM order_settlements WHERE order_id = ANY($1::text[])", order_ids)
        return {row["order_id"]: row["signature"] for row in rows}
