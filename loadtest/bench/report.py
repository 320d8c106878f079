"""The report: the goal table (each figure, its unit, its goal, met or not), printed and written as JSON and CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

INTAKE_GOALS = {10: 750.0, 50: 1425.0}  # 1.5x of 500 and 950 req/s

OVERHEAD_STAGES = {
    "dispatch_ms": "dispatch",
    "routing_excess_ms": "quote excess",
    "build_to_submit_ms": "claim",
    "to_venue_ms": "to venue",
    "after_landing_ms": "after landing",
}


def at_least(goal: float) -> Callable[[float], bool]:
    return lambda value: value >= goal


def goal_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The table: each figure, its unit, its goal and whether it is met (None: no goal)."""
    rows: list[dict[str, Any]] = []

    def add(metric: str, value: Any, unit: str, goal: str = "", met: Callable[[float], bool] | None = None) -> None:
        ok = None if met is None or value is None else bool(met(value))
        rows.append({"metric": metric, "value": value, "unit": unit, "goal": goal, "met": ok})

    intake = result.get("intake", {})
    runs = intake.get("runs", {})
    for c in (10, 50):
        post, ceil = runs.get(f"post_c{c}", {}), runs.get(f"ceiling_c{c}", {})
        add(f"intake POST c={c}", post.get("rps"), "req/s", f">= {INTAKE_GOALS[c]:.0f}", at_least(INTAKE_GOALS[c]))
        add(f"intake POST c={c} p50 / p99", f"{post.get('p50_ms')} / {post.get('p99_ms')}", "ms")
        add(f"intake POST c={c} errors", post.get("errors"), "", "0", lambda v: v == 0)
        add(f"ceiling GET {intake.get('ceiling_path')} c={c}", ceil.get("rps"), "req/s")
        add(f"ceiling c={c} p50 / p99", f"{ceil.get('p50_ms')} / {ceil.get('p99_ms')}", "ms")
        add(f"durability cost c={c} (ceiling / POST)", intake.get("durability_cost_ratio", {}).get(f"c{c}"), "x")
        add(
            f"engine CPU per POST / per ceiling GET c={c}",
            f"{post.get('engine_and_stores_cpu_ms_per_request')} / {ceil.get('engine_and_stores_cpu_ms_per_request')}",
            "ms",
        )
    cap = result.get("capacity", {})
    add("capacity (accepted -> terminal)", cap.get("orders_per_s"), "orders/s", ">= 500", lambda v: v >= 500)
    add("capacity: engine CPU per order (incl. PG/Redis)", cap.get("engine_and_stores_cpu_ms_per_order"), "ms")
    add("capacity: not terminal after drain", cap.get("not_terminal"), "orders", "0", lambda v: v == 0)
    add("capacity: accepted but not in PostgreSQL", cap.get("missing_in_postgres"), "orders", "0", lambda v: v == 0)
    over = result.get("overhead", {})
    add("overhead p50 (default venue timings)", over.get("overhead_p50_ms"), "ms")
    add("overhead p99", over.get("overhead_p99_ms"), "ms", "<= 5", lambda v: v <= 5)
    stages = over.get("stages", {})
    steps = [name for name in stages if name.split(" ")[0] in OVERHEAD_STAGES]
    add(
        "overhead p50 by stage: " + "/".join(OVERHEAD_STAGES[name.split(" ")[0]] for name in steps),
        "/".join(f"{stages[name].get('p50') or 0:.1f}" for name in steps),
        "ms",
    )
    cold = over.get("warm_up_overhead_ms", {})
    add(f"overhead of the first {cold.get('n')} orders after start-up p50 / max", f"{cold.get('p50')} / {cold.get('max')}", "ms")
    add("routing stage / quote latency p50", over.get("routing_ratio_p50"), "x", "<= 1.1", lambda v: v <= 1.1)
    add("routing stage / quote latency p99", over.get("routing_ratio_p99"), "x", "<= 1.1", lambda v: v <= 1.1)
    fan = result.get("fanout", {})
    add(f"fan-out p50 ({fan.get('subscribers')} subscribers)", fan.get("latency_p50_ms"), "ms")
    add("fan-out p99", fan.get("latency_p99_ms"), "ms", "<= 50", lambda v: v <= 50)
    steady = fan.get("steady_state", {})
    add("fan-out p50 / p99 once all are connected", f"{steady.get('p50_ms')} / {steady.get('p99_ms')}", "ms")
    add("fan-out dropped events", fan.get("dropped_events"), "events", "0", lambda v: v == 0)
    mem = result.get("memory", {})
    add("memory idle (summed RSS)", mem.get("idle_rss_mb"), "MB")
    add("memory under load (peak summed RSS)", mem.get("load_rss_mb"), "MB")
    return rows


def print_table(result: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    meta = result["meta"]
    print()
    print(
        f"Order execution engine benchmark: mode {meta['mode']}, {meta['started_at']}, {meta['cpus']} CPUs, "
        f"load avg {meta['load_avg_start']} -> {meta['load_avg_end']}, "
        f"other Ray nodes on the machine at start: {meta['others_at_start']['raylets']}"
    )
    print(
        f"CPU probe (median of 5 runs of a 10^6-step Python loop; lower is a faster machine): "
        f"{meta['cpu_probe_ms_start']} ms at start, {meta.get('cpu_probe_ms_end')} ms at the end"
    )
    width = max(len(r["metric"]) for r in rows) + 2
    print(f"{'metric':<{width}}{'value':>16}  {'unit':<9}{'goal':<10}met")
    print("-" * (width + 42))
    for r in rows:
        value = r["value"]
        shown = f"{value:,.2f}" if isinstance(value, float) else str(value)
        met = "" if r["met"] is None else ("yes" if r["met"] else "NO")
        print(f"{r['metric']:<{width}}{shown:>16}  {r['unit']:<9}{r['goal']:<10}{met}")
    print()
    for usage in result.get("cpu_by_phase", []):
        top = ", ".join(f"{k} {v:.0f}%" for k, v in list(usage["cpu_pct_of_one_core"].items())[:6])
        print(f"CPU {usage['phase']}: {top}; others on the machine {usage['other_processes_pct_of_one_core']:.0f}%")


def write_outputs(out: Path, stamp: str, result: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"bench-{stamp}.json"
    csv_path = out / f"bench-{stamp}.csv"
    json_path.write_text(json.dumps({**result, "table": rows}, indent=2, default=str))
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["metric", "value", "unit", "goal", "met"])
        writer.writeheader()
        writer.writerows(rows)
    return json_path, csv_path
