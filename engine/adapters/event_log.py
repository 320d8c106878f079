"""The engine-wide event log in PostgreSQL: every order event gets a global, increasing ``event_id``.

Writers insert events without one; one sequencer at a time (an advisory lock) numbers the unnumbered
events in a single transaction, oldest first. Numbers are therefore handed out in commit order, so a
reader that has seen id N never later finds a committed event with an id below N: resuming after N
misses nothing and repeats nothing, whatever crashed in between. Each sequencing notifies the
``oee_events`` channel with the highest id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from engine.accounts import LOCAL_ACCOUNT
from engine.adapters.postgres import guard
from engine.models import OrderEvent

CHANNEL = "oee_events"
_SEQUENCER_LOCK = 0x0E_E0_02


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """An order event with its place in the engine-wide log and what stream filters look at."""

    event_id: int
    order_type: str
    event: OrderEvent
    account: str = LOCAL_ACCOUNT


class EventLog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def sequence(self, limit: int = 5_000) -> int:
        """Number up to ``limit`` unnumbered events, oldest first; returns how many. Does nothing while
        another sequencer holds the lock (it is numbering them)."""

        async def op() -> int:
            async with self.pool.acquire() as conn, conn.transaction():
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _SEQUENCER_LOCK):
                    return 0
                rows = await conn.fetch(
                    """
                    WITH numbered AS (
                        SELECT order_id, seq, nextval('order_event_ids') AS event_id
                        FROM (
                            SELECT order_id, seq FROM order_events WHERE event_id IS NULL
                            ORDER BY created_at, order_id, seq LIMIT $1
                        ) todo
                    )
                    UPDATE order_events e SET event_id = n.event_id
                    FROM numbered n WHERE e.order_id = n.order_id AND e.seq = n.seq
                    RETURNING e.event_id
                    """,
                    limit,
                )
                if rows:
                    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(max(row["event_id"] for row in rows)))
                return len(rows)

        return await guard(op)

    async def head(self) -> int:
        """The highest event id handed out so far (0 before the first)."""

        async def op() -> int:
            async with self.pool.acquire() as conn:
                return int(await conn.fetchval("SELECT coalesce(max(event_id), 0) FROM order_events WHERE event_id IS NOT NULL"))

        return await guard(op)

    async def after(
        self,
        event_id: int,
        limit: int = 500,
        *,
        order_types: Sequence[str] | None = None,
        statuses: Sequence[str] | None = None,
        account: str | None = None,
    ) -> list[LoggedEvent]:
        """Events numbered after ``event_id``, in order, that pass the filters (None: any)."""

        async def op() -> list[asyncpg.Record]:
            async with self.pool.acquire() as conn:
                rows: list[asyncpg.Record] = await conn.fetch(
                    """
                    SELECT e.event_id, o.order_type, o.account, e.payload
                    FROM order_events e JOIN orders o USING (order_id)
                    WHERE e.event_id > $1
                      AND ($3::text[] IS NULL OR o.order_type = ANY($3))
                      AND ($4::text[] IS NULL OR e.status = ANY($4))
                      AND ($5::text IS NULL OR o.account = $5)
                    ORDER BY e.event_id LIMIT $2
                    """,
                    event_id,
                    limit,
                    list(order_types) if order_types is not None else None,
                    list(statuses) if statuses is not None else None,
                    account,
                )
                return rows

        return [
            LoggedEvent(row["event_id"], row["order_type"], OrderEvent.model_validate(row["payload"]), row["account"])
            for row in await guard(op)
        ]
