"""Phase B, capacity: orders/s from accepted to terminal with the engine saturated and the venues instant."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import asyncpg

from loadtest.bench.backlog import Backlog, rate_between
from loadtest.bench.common import TERMINAL, log
from loadtest.bench.modes import Mode
from loadtest.bench.profiling import Profiler
from loadtest.clients import http_load, order_bodies, rounded
from loadtest.engine_run import EngineRun
from loadtest.monitor import PhaseMonitor, PhaseUsage


async def capacity_phase(engine: EngineRun, mode: Mode, max_concurrent: int, usages: list[PhaseUsage], prof: Profiler) -> dict[str, Any]:
    pool = await asyncpg.create_pool(engine.admin_database_url, min_size=1, max_size=2)
    assert pool is not None
    backlog = Backlog(pool, engine.database, engine.role)
    cap = max(2 * max_concurrent, 100)
    submitters = 20
    try:
        backlog.start()
        log(f"capacity: submitting for {mode.capacity_s:g} s with {submitters} connections, backlog kept under {cap}")
        wall0 = time.time()
        profiling = prof.start(engine, "capacity", mode.capacity_s)
        async with PhaseMonitor(engine.watch, "capacity") as usage:
            t_start = backlog.now()
            run = await http_load(
                engine.url,
                "POST",
                "/api/orders/execute",
                submitters,
                mode.capacity_s,
                label="capacity submit",
                expect=202,
                bodies=order_bodies(),
                on_ok=backlog.on_ok,
                gate=lambda: backlog.in_flight < cap,
            )
            t_end = backlog.now()
        usages.append(usage)
        await prof.finish(profiling)
        wall1 = time.time()
        await asyncio.sleep(backlog.POLL_S * 2)
        log(f"capacity: {len(backlog.accepted)} accepted; draining (up to {mode.drain_timeout_s:g} s)")
        t_drain = time.perf_counter()
        drained = await backlog.wait_all_terminal(mode.drain_timeout_s)
        drain_s = time.perf_counter() - t_drain
        await backlog.stop()
        await backlog.poll_once()
        ramp_end = t_start + mode.capacity_ramp_s
        orders_per_s = rate_between(backlog.timeline, ramp_end, t_end)
        accepted_per_s = rate_between(backlog.timeline, ramp_end, t_end, "accepted")
        rows = await pool.fetch("SELECT order_id, status FROM orders WHERE order_id = ANY($1::text[])", backlog.accepted)
        status_of = {r["order_id"]: r["status"] for r in rows}
        missing = [oid for oid in backlog.accepted if oid not in status_of]
        open_ids = [oid for oid in backlog.accepted if oid in status_of and status_of[oid] not in TERMINAL]
        counts = Counter(status_of.values())
        reasons = await pool.fetch(
            "SELECT failure_reason, count(*) AS n FROM orders WHERE status = 'failed' GROUP BY 1 ORDER BY 2 DESC LIMIT 5"
        )
        by_ts = await pool.fetchval(
            "SELECT count(*) FROM orders WHERE coalesce(executed_at, failed_at) BETWEEN to_timestamp($1) AND to_timestamp($2)",
            wall0 + mode.capacity_ramp_s,
            wall1,
        )
    finally:
        await backlog.stop()
        await pool.close()
    window = max(1e-9, (wall1 - wall0) - mode.capacity_ramp_s)
    finished = max(1.0, (rate_between(backlog.timeline, t_start, t_end) or 0.0) * (t_end - t_start))  # terminal in the window
    log(f"  {orders_per_s or 0:.1f} orders/s terminal; not terminal after drain: {len(open_ids)}; missing: {len(missing)}")
    return {
        "max_concurrent_orders": max_concurrent,
        "submit_connections": submitters,
        "backlog_cap": cap,
        "window_s": round(t_end - t_start, 2),
        "ramp_excluded_s": mode.capacity_ramp_s,
        "orders_per_s": rounded(orders_per_s, 1),
        "orders_per_s_by_timestamps": round(by_ts / window, 1),
        "accepted_per_s": rounded(accepted_per_s, 1),
        "accepted": len(backlog.accepted),
        "engine_cpu_ms_per_order": round(1000 * usage.engine_cpu_s() / finished, 1),
        "engine_and_stores_cpu_ms_per_order": round(1000 * usage.engine_cpu_s(True) / finished, 1),
        "machine_busy_pct": round(usage.machine_busy_pct, 1),
        "submit": run.as_dict(),
        "statuses": dict(counts),
        "failure_reasons": {str(r["failure_reason"]): int(r["n"]) for r in reasons},
        "drained": drained,
        "drain_s": round(drain_s, 2),
        "not_terminal": len(open_ids),
        "not_terminal_ids": open_ids[:20],
        "missing_in_postgres": len(missing),
        "missing_ids": missing[:20],
        "pg_role_connection_limit": engine.pg_connection_limit or None,
        "engine_log_problems": engine.log_problems(),
        "peak_pg_connections_engine": backlog.peak_connections,
        "peak_pg_connections_server": backlog.peak_server_connections,
        "timeline": backlog.timeline,
        "cpu": usage.as_dict(),
    }
