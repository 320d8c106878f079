"""Phase A, intake: POST /api/orders/execute at 10 and 50 connections, against a no-op GET as the ceiling."""

from __future__ import annotations

from typing import Any

from loadtest.bench.common import log
from loadtest.bench.modes import Mode
from loadtest.bench.profiling import Profiler
from loadtest.clients import http_load, order_bodies, percentile, rounded
from loadtest.engine_run import EngineRun
from loadtest.monitor import PhaseMonitor, PhaseUsage


async def intake_phase(engine: EngineRun, mode: Mode, ceiling_path: str, usages: list[PhaseUsage], prof: Profiler) -> dict[str, Any]:
    bodies = order_bodies()
    post: dict[str, Any] = {"method": "POST", "path": "/api/orders/execute", "expect": 202, "bodies": bodies}
    ceiling: dict[str, Any] = {"method": "GET", "path": ceiling_path, "expect": 200}
    log(f"intake: warm-up {mode.warmup_s:g} s")
    await http_load(engine.url, concurrency=10, duration_s=mode.warmup_s, label="warm-up POST", **post)
    await http_load(engine.url, concurrency=10, duration_s=mode.warmup_s, label="warm-up ceiling", **ceiling)
    runs: dict[str, dict[str, Any]] = {}
    for conc in (10, 50):
        for kind, spec in (("post", post), ("ceiling", ceiling)):
            name = f"{kind}_c{conc}"
            log(f"intake: {spec['method']} {spec['path']} at {conc} connections for {mode.intake_s:g} s")
            profiling = prof.start(engine, f"intake-{name}", mode.intake_s) if (kind == "post" and conc == 50) else None
            async with PhaseMonitor(engine.watch, f"intake {spec['method']} {spec['path']} c={conc}") as usage:
                run = await http_load(engine.url, concurrency=conc, duration_s=mode.intake_s, label=name, **spec)
            usages.append(usage)
            done = run.ok + sum(run.errors.values())
            runs[name] = {
                **run.as_dict(),
                "engine_cpu_ms_per_request": rounded(1000 * usage.engine_cpu_s() / done, 2) if done else None,
                "engine_and_stores_cpu_ms_per_request": rounded(1000 * usage.engine_cpu_s(True) / done, 2) if done else None,
                "cpu": usage.as_dict(),
            }
            await prof.finish(profiling)
            log(f"  {run.rps:.0f} req/s, p50 {percentile(run.latencies_ms, 50) or 0:.1f} ms, errors {sum(run.errors.values())}")
    cost = {
        f"c{c}": rounded(runs[f"ceiling_c{c}"]["rps"] / runs[f"post_c{c}"]["rps"], 2) if runs[f"post_c{c}"]["rps"] else None
        for c in (10, 50)
    }
    return {
        "ceiling_path": ceiling_path,
        "ceiling_note": "GET /api/orders/order_0000000000000_00000000 is a well-formed id: get_order reads Redis then "
        "PostgreSQL (api/routes/orders.py get_order), so it is not a no-op; the ceiling is this path instead",
        "runs": runs,
        "durability_cost_ratio": cost,
    }
