"""Phase C1, overhead: each order's end-to-end time less the venue time it spent, by stage, at default venue timings."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from typing import Any

import asyncpg

from loadtest.bench.backlog import Backlog
from loadtest.bench.common import dist, log
from loadtest.bench.modes import Mode
from loadtest.clients import http_load, order_bodies, percentile, rounded
from loadtest.engine_run import EngineRun
from loadtest.monitor import PhaseMonitor, PhaseUsage

LIFECYCLE = ["pending", "routing", "building", "submitted", "confirmed"]


async def overhead_phase(engine: EngineRun, mode: Mode, quote_ms: float, usages: list[PhaseUsage]) -> dict[str, Any]:
    pool = await asyncpg.create_pool(engine.admin_database_url, min_size=1, max_size=2)
    assert pool is not None
    backlog = Backlog(pool, engine.database, engine.role)
    backlog.POLL_S = 0.1
    stop = asyncio.Event()

    def on_ok(payload: bytes) -> None:
        backlog.on_ok(payload)
        if len(backlog.accepted) >= mode.overhead_warmup + mode.overhead_orders:
            stop.set()

    try:
        backlog.start()
        log(
            f"overhead: {mode.overhead_warmup} warm-up + {mode.overhead_orders} orders at default venue timings, "
            f"at most {mode.overhead_inflight} in flight"
        )
        async with PhaseMonitor(engine.watch, "overhead (default venue timings)") as usage:
            await http_load(
                engine.url,
                "POST",
                "/api/orders/execute",
                2,
                3600,
                label="overhead submit",
                expect=202,
                bodies=order_bodies(),
                on_ok=on_ok,
                gate=lambda: backlog.in_flight < mode.overhead_inflight - 1,
                stop=stop,
            )
            await backlog.wait_all_terminal(60 + 5 * (mode.overhead_warmup + mode.overhead_orders))
        usages.append(usage)
        await backlog.stop()
        rows = await pool.fetch(
            "SELECT order_id, seq, status, (payload->>'at')::float8 AS at FROM order_events WHERE order_id = ANY($1::text[]) "
            "ORDER BY order_id, seq",
            backlog.accepted,
        )
        # The venues' own time for each order's legs (asked at once): from asking them for the legs'
        # terms to all of them agreed, as stored with the order's transaction. Signing, storing,
        # sending and landing the transaction come after, and count as the engine's.
        swap_rows = await pool.fetch(
            "SELECT order_id, extract(epoch from legs_asked_at) * 1000 AS sent, extract(epoch from legs_agreed_at) * 1000 AS landed "
            "FROM order_settlements WHERE order_id = ANY($1::text[]) AND legs_asked_at IS NOT NULL",
            backlog.accepted,
        )
    finally:
        await backlog.stop()
        await pool.close()
    trails: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for r in rows:
        trails[r["order_id"]].append((r["status"], float(r["at"])))
    at_venue = {r["order_id"]: (float(r["sent"]), float(r["landed"])) for r in swap_rows}
    parts: dict[str, list[float]] = defaultdict(list)
    excluded: Counter[str] = Counter()
    slowest: list[dict[str, Any]] = []
    cold: list[float] = []
    for index, oid in enumerate(backlog.accepted):
        trail = trails.get(oid, [])
        statuses = [s for s, _ in trail]
        if statuses != LIFECYCLE:
            ended = statuses[-1] if statuses else "no events"
            excluded[f"ended {ended}" if ended != "confirmed" else "confirmed after a retry or re-quote"] += 1
            continue
        if oid not in at_venue:
            excluded["no transaction stored"] += 1
            continue
        at = {s: t for s, t in trail}
        sent, landed = at_venue[oid]
        total = at["confirmed"] - at["pending"]
        routing_stage = at["building"] - at["routing"]
        swap_stage = at["confirmed"] - at["submitted"]
        stages = {
            "dispatch_ms (routing.at - pending.at)": at["routing"] - at["pending"],
            "routing_excess_ms (building.at - routing.at - quote)": routing_stage - quote_ms,
            "build_to_submit_ms (submitted.at - building.at)": at["submitted"] - at["building"],
            "to_venue_ms (legs asked - submitted.at)": sent - at["submitted"],
            "after_venue_ms (confirmed.at - legs agreed: sign, store, send, land)": at["confirmed"] - landed,
        }
        order_overhead = total - quote_ms - (landed - sent)  # = the sum of the stages above
        if index < mode.overhead_warmup:
            cold.append(order_overhead)
            continue
        parts["overhead_ms"].append(order_overhead)
        for name, value in stages.items():
            parts[name].append(value)
        slowest.append(
            {"submitted_nth": index, "order_id": oid, "overhead_ms": round(order_overhead, 2)}
            | {k.split(" ")[0]: round(v, 2) for k, v in stages.items()}
        )
        parts["venue_swap_ms (legs agreed - legs asked)"].append(landed - sent)
        parts["routing_stage_ms"].append(routing_stage)
        parts["swap_stage_ms"].append(swap_stage)
        parts["total_ms"].append(total)
        if quote_ms > 0:
            parts["routing_ratio"].append(routing_stage / quote_ms)
    overhead = parts["overhead_ms"]
    ratio = parts["routing_ratio"]
    log(f"  overhead p50 {percentile(overhead, 50) or 0:.1f} ms p99 {percentile(overhead, 99) or 0:.1f} ms over {len(overhead)} orders")
    return {
        "orders": len(backlog.accepted),
        "warm_up_orders": mode.overhead_warmup,
        "measured_orders": len(overhead),
        "excluded": dict(excluded),
        "quote_latency_ms": quote_ms,
        "max_in_flight": mode.overhead_inflight,
        "overhead_p50_ms": rounded(percentile(overhead, 50)),
        "overhead_p99_ms": rounded(percentile(overhead, 99)),
        "routing_ratio_p50": rounded(percentile(ratio, 50), 3),
        "routing_ratio_p99": rounded(percentile(ratio, 99), 3),
        "stages": {name: dist(values, 3 if name == "routing_ratio" else 2) for name, values in parts.items()},
        # the first orders after the engine started (not in the figures above): their max shows the cold start
        "warm_up_overhead_ms": dist(cold),
        # where the tail comes from: which orders (by submission order) and which stage
        "slowest": sorted(slowest, key=lambda o: -o["overhead_ms"])[:5],
        "cpu": usage.as_dict(),
    }
