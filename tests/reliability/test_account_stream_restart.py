"""The account-wide stream across a kill -9 of the whole engine: a client that resumes with
``?since=<last eventId>`` on the restarted engine gets every remaining event of its orders, none twice,
exactly the engine-wide log as PostgreSQL holds it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets

from tests.reliability.conftest import Stacks, kill_engine
from tests.reliability.helpers import pg_connect, submit_orders, wait_terminal

pytestmark = pytest.mark.slow

ORDERS = 12
ENV = {"OEE_SWAP_LATENCY_MS": "800-1200", "OEE_MAX_CONCURRENT_ORDERS": "3"}  # orders still run after the restart


async def _read(ws: Any, events: list[dict[str, Any]], until: Any) -> None:
    while not until(events):
        message = json.loads(await ws.recv())
        if message.get("type") == "event":
            events.append(message)


async def test_resume_after_the_engine_was_killed_and_restarted(stacks: Stacks) -> None:
    stack = stacks.new()
    db = stack.stores.database_url
    first = stack.engine(**ENV)
    await asyncio.to_thread(first.start)
    before: list[dict[str, Any]] = []
    async with websockets.connect(f"{first.ws_url}/api/stream", open_timeout=60) as ws:
        start = json.loads(await ws.recv())["eventId"]
        ids, _ = await submit_orders(first.url, ORDERS, start=500)
        async with asyncio.timeout(180):
            await _read(ws, before, lambda events: sum(e["status"] == "confirmed" for e in events) >= 2)
    report = await asyncio.to_thread(kill_engine, first)
    assert not report.left, report.left

    second = stack.engine(**ENV)
    await asyncio.to_thread(second.start)
    after: list[dict[str, Any]] = []
    async with websockets.connect(f"{second.ws_url}/api/stream?since={before[-1]['eventId']}", open_timeout=60) as ws:
        await ws.recv()
        await wait_terminal(db, ids, timeout_s=300)
        async with asyncio.timeout(180):
            terminal = {"confirmed", "failed", "cancelled", "expired"}
            await _read(ws, after, lambda events: {e["orderId"] for e in before + events if e["status"] in terminal} >= set(ids))

    conn = await pg_connect(db)
    try:
        await _sequenced(conn, ids)
        logged = await conn.fetch(
            "SELECT event_id, order_id, seq FROM order_events WHERE event_id > $1 AND event_id <= $2 ORDER BY event_id",
            start,
            after[-1]["eventId"],
        )
    finally:
        await conn.close()
    streamed = [(e["eventId"], e["orderId"], e["seq"]) for e in before + after]
    print(f"\naccount stream across kill -9: {len(before)} events before, {len(after)} after, {len(logged)} in the log")
    assert streamed == [(row["event_id"], row["order_id"], row["seq"]) for row in logged]


async def _sequenced(conn: Any, ids: list[str], timeout_s: float = 60.0) -> None:
    """Wait until every event of ``ids`` has its eventId (the restarted dispatcher numbers them)."""
    async with asyncio.timeout(timeout_s):
        while await conn.fetchval("SELECT count(*) FROM order_events WHERE order_id = any($1::text[]) AND event_id IS NULL", ids):
            await asyncio.sleep(0.1)
