"""Phase C2, fan-out: many WebSocket subscribers per order; the latency of live events and what they missed."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, defaultdict
from typing import Any

import aiohttp
import asyncpg

from engine.gc_tuning import tune_garbage_collection
from loadtest.bench.common import TERMINAL, dist, log
from loadtest.bench.modes import Mode
from loadtest.clients import LoopLag, OpenSockets, Subscription, percentile, rounded, submit_orders, subscribe
from loadtest.engine_run import EngineRun
from loadtest.monitor import PhaseMonitor, PhaseUsage


async def fanout_phase(engine: EngineRun, mode: Mode, subscribers: int, per_order: int, usages: list[PhaseUsage]) -> dict[str, Any]:
    n_orders = max(1, math.ceil(subscribers / per_order))
    log(f"fan-out: submitting {n_orders} orders, then {subscribers} subscribers ({per_order} per order) in batches of {mode.connect_batch}")
    ids, submit_errors = await submit_orders(engine.url, n_orders)
    if not ids:
        raise RuntimeError(f"fan-out: no order accepted ({dict(submit_errors)})")
    assignments = [ids[min(i // per_order, len(ids) - 1)] for i in range(subscribers)]
    timeout_s = 90 + 1.5 * n_orders
    sockets = OpenSockets()
    lag = LoopLag()
    # the client holds as many sockets as the replica: the replica's GC thresholds keep its own collections
    # from stalling its loop, which would read late events as slow ones (README.md)
    tune_garbage_collection()
    handshakes = asyncio.Semaphore(mode.handshakes)
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=0)
    async with PhaseMonitor(engine.watch, "fan-out") as usage:
        lag.start()
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=30)) as session:
            tasks: list[asyncio.Task[Subscription]] = []
            t0 = time.perf_counter()
            for start in range(0, subscribers, mode.connect_batch):
                futures: list[asyncio.Future[None]] = []
                for oid in assignments[start : start + mode.connect_batch]:
                    future: asyncio.Future[None] = loop.create_future()
                    futures.append(future)
                    tasks.append(asyncio.create_task(subscribe(session, engine.ws_url, oid, handshakes, future, sockets, timeout_s)))
                await asyncio.gather(*futures)
            connect_s = time.perf_counter() - t0
            all_connected_ms = time.time() * 1000
            log(f"  {subscribers} subscribers connected in {connect_s:.1f} s (peak open {sockets.peak}); waiting for the streams to end")
            subs = await asyncio.gather(*tasks)
        await lag.stop()
    usages.append(usage)
    pool = await asyncpg.create_pool(engine.admin_database_url, min_size=1, max_size=1)
    assert pool is not None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            open_count = await pool.fetchval(
                "SELECT count(*) FROM orders WHERE order_id = ANY($1::text[]) AND status <> ALL($2::text[])", ids, TERMINAL
            )
            if open_count == 0:
                break
            await asyncio.sleep(0.5)
        rows = await pool.fetch("SELECT order_id, seq, status FROM order_events WHERE order_id = ANY($1::text[])", ids)
    finally:
        await pool.close()
    expected: dict[str, set[int]] = defaultdict(set)
    for r in rows:
        expected[r["order_id"]].add(int(r["seq"]))
    live: list[float] = []
    steady: list[float] = []  # events stamped after the last subscriber connected: no handshakes competing
    unstalled: list[float] = []  # events during whose delivery this client did not stall itself (> 5 ms)
    late_while_stalled = 0  # live events over 50 ms during whose delivery the client stalled
    live_by_status: dict[str, list[float]] = defaultdict(list)
    history = 0
    dropped = duplicates = out_of_order = incomplete = 0
    errors: Counter[str] = Counter()
    for sub in subs:
        seqs = [seq for seq, _, _, _ in sub.events]
        missing = expected[sub.order_id] - set(seqs)
        dropped += len(missing)
        duplicates += len(seqs) - len(set(seqs))
        out_of_order += int(seqs != sorted(seqs))
        if missing or not sub.terminal:
            incomplete += 1
        if sub.error:
            errors[sub.error.split(":")[0]] += 1
        for _, status, sent, received in sub.events:
            if sub.connected_ms is not None and sent >= sub.connected_ms:
                live.append(received - sent)
                live_by_status[status].append(received - sent)
                stall = lag.stall_during(sent, received)
                if stall == 0:
                    unstalled.append(received - sent)
                elif received - sent > 50:
                    late_while_stalled += 1
                if sent >= all_connected_ms:
                    steady.append(received - sent)
            else:
                history += 1
    log(f"  live-event latency p50 {percentile(live, 50) or 0:.1f} ms p99 {percentile(live, 99) or 0:.1f} ms; dropped {dropped}")
    return {
        "subscribers": subscribers,
        "per_order": per_order,
        "orders": len(ids),
        "order_submit_errors": dict(submit_errors),
        "connected": sum(1 for s in subs if s.connected_ms is not None),
        "connect_s": round(connect_s, 2),
        "peak_open_sockets": sockets.peak,
        "events_expected": sum(len(expected[s.order_id]) for s in subs),
        "events_received": sum(len(s.events) for s in subs),
        "live_events": len(live),
        "history_events": history,
        "latency_p50_ms": rounded(percentile(live, 50)),
        "latency_p99_ms": rounded(percentile(live, 99)),
        "latency_max_ms": rounded(max(live, default=0.0)),
        "latency_by_status": {k: dist(v) for k, v in sorted(live_by_status.items())},
        "steady_state": {"events": len(steady), "p50_ms": rounded(percentile(steady, 50)), "p99_ms": rounded(percentile(steady, 99))},
        "dropped_events": dropped,
        "duplicate_events": duplicates,
        "out_of_order_streams": out_of_order,
        "incomplete_streams": incomplete,
        "client_errors": dict(errors),
        "client_loop_lag_ms": dist(lag.lags_ms),
        # The client's own stalls (its loop waking late, its garbage collector) over 5 ms, and the live
        # events delivered while none happened: a late event with a client stall is partly the client's.
        "client_stalls_ms": sorted((round(ms, 1) for _, ms in lag.stalls), reverse=True)[:10],
        "client_gc_pauses": [{"generation": gen, "ms": round(ms, 1)} for _, gen, ms in lag.gc_pauses],
        "live_without_client_stall": {
            "events": len(unstalled),
            "p50_ms": rounded(percentile(unstalled, 50)),
            "p99_ms": rounded(percentile(unstalled, 99)),
        },
        "late_events_during_client_stall": late_while_stalled,
        "cpu": usage.as_dict(),
    }
