"""Whole-engine crash: kill -9 every engine process (Ray included) with ~50 orders in flight, then start again.

Every order that got a 202 must reach exactly one terminal state, with at most one landed
transaction on the chain (its own process, so it outlives the engine) and the orders row naming
that transaction's signature, within 10 s of
the restart (counted from the moment the restarted engine answers /health) plus the venue time
its remaining orders need.
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import signal
import socket
import time
from collections import Counter

import httpx
import psutil
import pytest

from tests.chain_scan import scan_rpc
from tests.e2e.wsclient import follow
from tests.reliability.conftest import Stacks, engine_processes, kill_engine
from tests.reliability.helpers import (
    TERMINAL,
    all_order_ids,
    api_disagreements,
    audit,
    check_trail,
    redis_leftovers,
    statuses,
    submit_orders,
    wait_mix,
    wait_terminal,
)

pytestmark = pytest.mark.slow

ORDERS = 50
CONCURRENCY = 12
QUOTE_MS = 300  # long enough that some orders are mid-quote at the kill
SWAP_MS = (800, 1200)  # long enough that some are mid-swap
ENV = {
    "OEE_QUOTE_LATENCY_MS": str(QUOTE_MS),
    "OEE_SWAP_LATENCY_MS": f"{SWAP_MS[0]}-{SWAP_MS[1]}",
    "OEE_MAX_CONCURRENT_ORDERS": str(CONCURRENCY),
}


async def test_kill_9_the_whole_engine_mid_flight_then_restart(stacks: Stacks) -> None:
    stack = stacks.new()
    db = stack.stores.database_url
    engine = stack.engine(**ENV)
    await asyncio.to_thread(engine.start)

    ids, keyed = await submit_orders(engine.url, ORDERS, key_prefix=f"crash-{secrets.token_hex(3)}")
    # Kill when orders are mid-swap and mid-quote at once, with most still queued (best effort for the quote window).
    waited = time.monotonic()
    seen = await wait_mix(db, ids, {"submitted": 3, "routing": 1, "pending": 10}, timeout_s=20)
    waited = time.monotonic() - waited
    assert seen["submitted"] >= 1 and seen["pending"] >= 1, f"no order mid-swap or none queued: {dict(seen)}"
    report = await asyncio.to_thread(kill_engine, engine)
    killed_at = time.time()
    assert not report.left, f"engine processes survived kill -9: {report.left}"
    at_kill = Counter((await statuses(db, ids)).values())
    landed = {tx.memo for tx in await scan_rpc(stack.chain.url) if tx.error is None}  # the chain outlives the engine
    landed_unconfirmed = sum(1 for order_id, status in (await statuses(db, ids)).items() if order_id in landed and status != "confirmed")
    open_at_kill = sum(n for status, n in at_kill.items() if status not in TERMINAL)
    print(
        f"\ncrash: {ORDERS} accepted; killed {waited:.1f} s later; at the kill (PostgreSQL) {dict(at_kill)}; "
        f"swaps landed but not confirmed {landed_unconfirmed}"
    )
    print(f"crash: {report.line()}")
    assert open_at_kill > 0, "every order finished before the kill: the test proved nothing"

    await asyncio.sleep(1.0)  # dead for a moment: nothing of the old engine may still be working
    assert not engine_processes(engine.ray_dir)
    launched = time.time()
    await asyncio.to_thread(engine.start)
    healthy = time.time()
    venue_s = math.ceil(open_at_kill / CONCURRENCY) * (QUOTE_MS + SWAP_MS[1]) / 1000
    budget_s = 10.0 + venue_s
    await wait_terminal(db, ids, timeout_s=budget_s + 30)
    result = await audit(db, ids, stack.chain.url)
    recovery_s = result.last_terminal_ms / 1000 - healthy
    terminal = sum(n for s, n in result.by_status.items() if s in TERMINAL)
    print(
        f"crash: recovered {terminal}/{ORDERS}, double swaps {len(result.double_swaps)}, tx mismatches {len(result.tx_mismatch)}; "
        f"restart took {healthy - launched:.1f} s (down {launched - killed_at:.1f} s); last terminal state {recovery_s:.1f} s after "
        f"the restarted engine was healthy (budget {budget_s:.1f} s = 10 s + {open_at_kill} open orders' venue time {venue_s:.1f} s)"
    )
    print(f"crash: {result.line()}")
    assert not result.problems(), result.problems()
    assert result.by_status["confirmed"] == ORDERS, (dict(result.by_status), dict(result.failure_reasons))  # small, liquid: all fill
    assert recovery_s <= budget_s, f"recovery {recovery_s:.1f} s over budget {budget_s:.1f} s"

    left = await redis_leftovers(stack.stores, ids)
    stale = await api_disagreements(engine.url, db, ids)
    assert not stale, f"GET /api/orders/{{id}} disagrees with PostgreSQL (seen, truth): {stale}"
    assert left["active"] == [] and left["queued"] == [] and left["orphan_keys"] == [], left

    # The streams tell the same story after the crash: whole history, in order, once.
    sample = ids[:: max(1, ORDERS // 5)]
    streams = await asyncio.gather(*(follow(engine.ws_url, i) for i in sample))
    for order_id, (messages, code) in zip(sample, streams, strict=True):
        events = [(m["seq"], m["status"]) for m in messages if m.get("type") == "status"]
        assert events == result.trails[order_id] and check_trail(events) is None and code == 1000, (order_id, events, code)

    # Idempotency-Keys survive the crash: a retried POST gets the original order, nothing new is stored.
    replays = list(keyed.items())[:10]
    async with httpx.AsyncClient(base_url=engine.url, timeout=30) as client:
        answers = await asyncio.gather(
            *(client.post("/api/orders/execute", json=body, headers={"Idempotency-Key": key}) for key, (body, _) in replays)
        )
    assert [(a.status_code, a.json()["orderId"]) for a in answers] == [(202, order_id) for _, (_, order_id) in replays]
    assert sorted(await all_order_ids(db)) == sorted(ids)
    print(f"crash: {len(replays)} Idempotency-Key replays after the restart returned the original orders; rows {len(ids)}")


async def test_sigterm_to_the_whole_process_group_stops_at_once_and_leaves_nothing(stacks: Stacks) -> None:
    """systemd's default stop (and ``kill -- -pgid``) signals every process of the group at once, so
    Ray's own daemons are gone before the engine starts its shutdown. It must still stop promptly (it
    waited ~35 s on a dead Serve controller before) and leave no process, HAProxy or port behind."""
    stack = stacks.new()
    engine = stack.engine()
    await asyncio.to_thread(engine.start)
    ids, _ = await submit_orders(engine.url, 3, key_prefix=f"group-{secrets.token_hex(3)}")
    assert engine.proc is not None
    main = engine.proc
    signalled = time.monotonic()
    os.killpg(main.pid, signal.SIGTERM)
    code = await asyncio.to_thread(main.wait, 60)
    took = time.monotonic() - signalled
    deadline = time.monotonic() + 15  # Ray workers outside the group exit once their raylet is gone
    left = engine_processes(engine.ray_dir)
    while left and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        left = engine_processes(engine.ray_dir)
    haproxy = [p.pid for p in psutil.process_iter(["cmdline"]) if engine.haproxy_dir in " ".join(p.info["cmdline"] or ())]
    log = engine.log_tail(200)
    print(f"\ngroup SIGTERM: engine exited {code} after {took:.1f} s; processes left {len(left)}")
    assert code == 0, log
    assert not left, f"engine processes outlived the stop: {[p.pid for p in left]}"
    assert not haproxy, f"HAProxy outlived the stop: {haproxy}"
    with socket.socket() as sock:  # the port is free for the next engine
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", engine.port))
    assert "skipping Serve's and the actors' shutdown" in log, log
    assert took < 20, f"stopping took {took:.1f} s:\n{log}"
    engine.proc = None
    # nothing accepted was lost: the orders are in PostgreSQL, and the next start finishes them
    await asyncio.to_thread(engine.start)
    await wait_terminal(stack.stores.database_url, ids, timeout_s=60)
