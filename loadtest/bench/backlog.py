"""The engine's backlog during a phase: orders the client got a 202 for against terminal rows in PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import asyncpg

from loadtest.bench.common import TERMINAL


class Backlog:
    """Accepted ids (from the client) against terminal rows (from PostgreSQL), polled in the background."""

    POLL_S = 0.25

    def __init__(self, pool: asyncpg.Pool, database: str, role: str) -> None:
        self.pool = pool
        self.database = database
        self.role = role
        self.accepted: list[str] = []
        self.total = 0
        self.terminal = 0
        self.timeline: list[dict[str, float]] = []
        self.peak_connections = 0
        self.peak_server_connections = 0
        self._t0 = time.perf_counter()
        self._task: asyncio.Task[None] | None = None

    def on_ok(self, payload: bytes) -> None:
        self.accepted.append(json.loads(payload)["orderId"])

    @property
    def in_flight(self) -> int:
        return len(self.accepted) - self.terminal

    async def poll_once(self) -> None:
        row = await self.pool.fetchrow(
            "SELECT count(*) FILTER (WHERE status = ANY($1::text[])) AS terminal, count(*) AS total FROM orders", TERMINAL
        )
        conns = await self.pool.fetchrow(
            "SELECT count(*) FILTER (WHERE datname = $1 AND usename = $2) AS ours, count(*) AS total "
            "FROM pg_stat_activity WHERE backend_type = 'client backend'",
            self.database,
            self.role,
        )
        assert row is not None and conns is not None
        self.terminal, self.total = int(row["terminal"]), int(row["total"])
        self.peak_connections = max(self.peak_connections, int(conns["ours"]))
        self.peak_server_connections = max(self.peak_server_connections, int(conns["total"]))
        self.timeline.append(
            {
                "t": round(time.perf_counter() - self._t0, 3),
                "accepted": len(self.accepted),
                "in_pg": self.total,
                "terminal": self.terminal,
                "pg_conns": int(conns["ours"]),
            }
        )

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(asyncpg.PostgresError, OSError):
                await self.poll_once()
            await asyncio.sleep(self.POLL_S)

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._task = asyncio.create_task(self._run())

    def now(self) -> float:
        return time.perf_counter() - self._t0

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_all_terminal(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.terminal >= len(self.accepted) and self.total >= len(self.accepted):
                return True
            await asyncio.sleep(self.POLL_S)
        return False


def rate_between(timeline: list[dict[str, float]], start: float, end: float, key: str = "terminal") -> float | None:
    """Growth per second of ``key`` between the samples nearest to ``start`` and ``end`` (polls may be late)."""
    if len(timeline) < 2:
        return None
    first = min(timeline, key=lambda s: abs(s["t"] - start))
    last = min(timeline, key=lambda s: abs(s["t"] - end))
    if last["t"] <= first["t"]:
        return None
    return (last[key] - first[key]) / (last["t"] - first["t"])
