"""What the fault tests count: accepted orders, terminal states, swaps per order, event trails, leftovers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis
import websockets

from engine.lifecycle import TERMINAL as TERMINAL_STATUSES
from engine.lifecycle import TRANSITIONS
from engine.models import OrderStatus
from tests.chain_scan import scan_rpc
from tests.conftest import TestStores

TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)
HAPPY = ["pending", "routing", "building", "submitted", "confirmed"]


def order_body(i: int) -> dict[str, Any]:
    """Small, always fillable market orders, both ways on a pair both venues trade.

    A wide slippage tolerance: fifty orders at once move the pool by more than the default 50 bps,
    and a slippage failure is the market's verdict, not what these tests are about."""
    if i % 2 == 0:
        return {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 1 + (i % 5) * 0.5, "orderType": "MARKET", "slippageBps": 1000}
    return {"tokenIn": "USDC", "tokenOut": "SOL", "amount": 100 + (i % 7) * 25, "orderType": "MARKET", "slippageBps": 1000}


async def submit_orders(
    url: str, count: int, *, key_prefix: str | None = None, start: int = 0
) -> tuple[list[str], dict[str, tuple[dict[str, Any], str]]]:
    """POST ``count`` orders at once; every one must get 202. Returns the ids and, when keyed, key -> (body, id)."""
    keyed: dict[str, tuple[dict[str, Any], str]] = {}

    async def one(client: httpx.AsyncClient, i: int) -> str:
        body = order_body(i)
        headers = {"Idempotency-Key": f"{key_prefix}-{i}"} if key_prefix else {}
        response = await client.post("/api/orders/execute", json=body, headers=headers)
        assert response.status_code == 202, f"order {i}: {response.status_code} {response.text}"
        order_id = str(response.json()["orderId"])
        if key_prefix:
            keyed[headers["Idempotency-Key"]] = (body, order_id)
        return order_id

    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        ids = list(await asyncio.gather(*(one(client, start + i) for i in range(count))))
    return ids, keyed


async def pg_connect(database_url: str, timeout_s: float = 30.0) -> asyncpg.Connection:
    """Connect, waiting for a server that is (re)starting."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await asyncpg.connect(database_url, timeout=5)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def statuses(database_url: str, ids: list[str]) -> dict[str, str]:
    conn = await pg_connect(database_url)
    try:
        rows = await conn.fetch("SELECT order_id, status FROM orders WHERE order_id = any($1::text[])", ids)
    finally:
        await conn.close()
    return {r["order_id"]: r["status"] for r in rows}


async def wait_terminal(database_url: str, ids: list[str], timeout_s: float) -> float:
    """Wait until every order is terminal in PostgreSQL; return time.time() at that point, or fail with the stuck ones."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            found = await statuses(database_url, ids)
            stuck = {i: found.get(i, "MISSING") for i in ids if found.get(i) not in TERMINAL}
            if not stuck:
                return time.time()
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(stuck)}/{len(ids)} orders not terminal after {timeout_s:.0f}s: {dict(Counter(stuck.values()))}")
        await asyncio.sleep(0.1)


async def wait_status(database_url: str, ids: list[str], status: str, at_least: int, timeout_s: float) -> list[str]:
    """Wait until at least ``at_least`` of the orders are in ``status``; return those."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = await statuses(database_url, ids)
        hit = [i for i in ids if found.get(i) == status]
        if len(hit) >= at_least:
            return hit
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {at_least} orders reached {status} in {timeout_s}s: {dict(Counter(found.values()))}")
        await asyncio.sleep(0.05)


async def wait_mix(database_url: str, ids: list[str], need: dict[str, int], timeout_s: float) -> Counter[str]:
    """Wait (best effort) until the orders are spread over states as ``need`` asks; return the last spread seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = Counter((await statuses(database_url, ids)).values())
        if all(found[s] >= n for s, n in need.items()) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.03)


@dataclass
class Audit:
    """Per-order truth: the orders row and its event trail (PostgreSQL), its landed transactions (the chain)."""

    orders: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    missing: list[str] = field(default_factory=list)
    not_one_terminal_event: dict[str, int] = field(default_factory=dict)
    bad_trails: dict[str, str] = field(default_factory=dict)
    swaps_per_order: Counter[int] = field(default_factory=Counter)
    split_orders: int = 0  # routed to two venues: both legs in its one transaction
    double_swaps: dict[str, int] = field(default_factory=dict)
    confirmed_without_swap: list[str] = field(default_factory=list)
    failed_with_swap: list[str] = field(default_factory=list)
    tx_mismatch: dict[str, tuple[str | None, list[str]]] = field(default_factory=dict)
    retried: list[str] = field(default_factory=list)  # routing entered more than once
    failure_reasons: Counter[str] = field(default_factory=Counter)
    last_terminal_ms: float = 0.0
    trails: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

    def problems(self) -> list[str]:
        out = []
        if self.missing:
            out.append(f"accepted but not in PostgreSQL: {self.missing[:5]}")
        open_ = {k: v for k, v in self.by_status.items() if k not in TERMINAL}
        if open_:
            out.append(f"not terminal: {open_}")
        for name in ("not_one_terminal_event", "bad_trails", "double_swaps", "confirmed_without_swap", "failed_with_swap", "tx_mismatch"):
            value = getattr(self, name)
            if value:
                out.append(f"{name}: {dict(list(value.items())[:5]) if isinstance(value, dict) else value[:5]} ({len(value)})")
        return out

    def line(self) -> str:
        terminal = {k: v for k, v in sorted(self.by_status.items()) if k in TERMINAL}
        return (
            f"terminal {sum(terminal.values())}/{self.orders} {terminal}, "
            f"swaps/order {dict(sorted(self.swaps_per_order.items()))} (split orders {self.split_orders}), "
            f"double swaps {len(self.double_swaps)}, "
            f"tx mismatches {len(self.tx_mismatch)}, bad trails {len(self.bad_trails)}, retried {len(self.retried)}"
        )


def check_trail(events: list[tuple[int, str]]) -> str | None:
    """seq 1..n without gaps, starting pending, every step legal in the lifecycle table."""
    seqs = [s for s, _ in events]
    if seqs != list(range(1, len(seqs) + 1)):
        return f"seqs {seqs}"
    if not events or events[0][1] != "pending":
        return f"starts with {events[:1]}"
    for (_, a), (_, b) in itertools.pairwise(events):
        if OrderStatus(b) not in TRANSITIONS[OrderStatus(a)]:
            return f"illegal {a} -> {b} in {[s for _, s in events]}"
    return None


async def audit(database_url: str, ids: list[str], chain_url: str) -> Audit:
    """The orders' truth: their rows and trails in PostgreSQL, and what landed for them on the chain
    (every transaction it executed, counted by memo: the engine is not asked)."""
    conn = await pg_connect(database_url)
    try:
        rows = {
            r["order_id"]: json.loads(r["doc"])  # to_jsonb: whatever columns the schema has today
            for r in await conn.fetch("SELECT order_id, to_jsonb(o)::text AS doc FROM orders o WHERE order_id = any($1::text[])", ids)
        }
        events = await conn.fetch(
            "SELECT order_id, seq, status, extract(epoch from created_at) * 1000 AS at_ms FROM order_events "
            "WHERE order_id = any($1::text[]) ORDER BY order_id, seq",
            ids,
        )
    finally:
        await conn.close()
    wanted = set(ids)
    swaps = [{"order_id": tx.memo, "tx_hash": tx.signature} for tx in await scan_rpc(chain_url) if tx.error is None and tx.memo in wanted]
    result = Audit(orders=len(ids))
    trails: dict[str, list[tuple[int, str]]] = {i: [] for i in ids}
    for e in events:
        trails[e["order_id"]].append((e["seq"], e["status"]))
        if e["status"] in TERMINAL:
            result.last_terminal_ms = max(result.last_terminal_ms, float(e["at_ms"]))
    ledger: dict[str, list[str]] = {i: [] for i in ids}
    for s in swaps:
        ledger[s["order_id"]].append(s["tx_hash"])
    result.trails = trails
    for order_id in ids:
        row = rows.get(order_id)
        if row is None:
            result.missing.append(order_id)
            continue
        status = row["status"]
        result.by_status[status] += 1
        if row.get("failure_reason"):
            result.failure_reasons[re.sub(r"order_[0-9]+_[0-9a-f]+", "order_…", str(row["failure_reason"]))[:240]] += 1
        trail = trails[order_id]
        terminal_events = sum(1 for _, s in trail if s in TERMINAL)
        if status in TERMINAL and terminal_events != 1:
            result.not_one_terminal_event[order_id] = terminal_events
        if status in TERMINAL and trail and trail[-1][1] != status:
            result.bad_trails[order_id] = f"row says {status}, trail ends {trail[-1][1]}"
        problem = check_trail(trail)
        if problem:
            result.bad_trails[order_id] = problem
        if sum(1 for _, s in trail if s == "routing") > 1:
            result.retried.append(order_id)
        decision = row.get("routing_decision") or {}
        if isinstance(decision, str):
            decision = json.loads(decision)
        if len(decision.get("legs") or []) > 1:
            result.split_orders += 1
        n = len(ledger[order_id])
        result.swaps_per_order[n] += 1
        if n > 1:  # one transaction carries every leg: a second one means the order swapped twice
            result.double_swaps[order_id] = n
        recorded = set(row.get("tx_hashes") or ([row["tx_hash"]] if row.get("tx_hash") else []))
        if status == "confirmed":
            if n == 0:
                result.confirmed_without_swap.append(order_id)
            elif row.get("tx_hash") not in ledger[order_id] or recorded != set(ledger[order_id]):
                result.tx_mismatch[order_id] = (row.get("tx_hash"), ledger[order_id])
        elif n and not set(ledger[order_id]) <= recorded:
            result.failed_with_swap.append(order_id)  # money moved, and the order does not say so
    return result


async def api_disagreements(url: str, database_url: str, ids: list[str]) -> dict[str, tuple[str, str]]:
    """Orders whose state at GET /api/orders/{id} (Redis first, then PostgreSQL) differs from PostgreSQL's."""
    truth = await statuses(database_url, ids)
    out: dict[str, tuple[str, str]] = {}
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for order_id in ids:
            response = await client.get(f"/api/orders/{order_id}")
            seen = str(response.json().get("status")) if response.status_code == 200 else f"HTTP {response.status_code}"
            if seen != truth.get(order_id):
                out[order_id] = (seen, truth.get(order_id, "MISSING"))
    return out


def as_text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


async def redis_leftovers(stores: TestStores, ids: list[str]) -> dict[str, Any]:
    """Redis after everything finished: nothing active or queued, no order key unknown to PostgreSQL."""
    client = aioredis.Redis.from_url(stores.redis_url)
    prefix = stores.redis_prefix
    try:
        active = {as_text(m) for m in await client.smembers(f"{prefix}active")}
        queued = {as_text(m) for m in await client.zrange(f"{prefix}queue", 0, -1)}
        keys = [as_text(k) async for k in client.scan_iter(match=f"{prefix}order:*", count=1000)]
    finally:
        await client.aclose()
    known = set(ids)
    orphan_keys = [k for k in keys if k.removeprefix(f"{prefix}order:") not in known]
    return {"active": sorted(active), "queued": sorted(queued), "order_keys": len(keys), "orphan_keys": orphan_keys}


async def all_order_ids(database_url: str) -> list[str]:
    conn = await pg_connect(database_url)
    try:
        return [r["order_id"] for r in await conn.fetch("SELECT order_id FROM orders")]
    finally:
        await conn.close()


async def follow_timed(ws_url: str, order_id: str, timeout_s: float = 60.0) -> tuple[list[dict[str, Any]], int | None]:
    """Every message of an order's stream with its receive time (``_rx``, epoch ms), and the close code."""
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s):
        async with websockets.connect(f"{ws_url}/api/orders/{order_id}/status", max_size=2**20, open_timeout=30) as ws:
            try:
                async for raw in ws:
                    message = json.loads(raw)
                    message["_rx"] = time.time() * 1000
                    messages.append(message)
            except websockets.ConnectionClosed:
                pass
            await ws.wait_closed()
            return messages, ws.close_code


def log_lines(log: str, pattern: str) -> list[str]:
    return [line for line in log.splitlines() if re.search(pattern, line)]


def engine_log(engine: Any) -> str:
    try:
        return str(engine.log_path.read_text(errors="replace"))
    except OSError:
        return ""
