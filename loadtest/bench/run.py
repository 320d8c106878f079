"""One benchmark run: the engines in turn, each phase on its engine, then the report (written even after a failure)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import sys
from dataclasses import asdict
from typing import Any

import aiohttp

from loadtest.bench.common import log
from loadtest.bench.engines import Engines
from loadtest.bench.machine import cpu_probe_ms, others_on_machine
from loadtest.bench.modes import MODES, QUOTE_MS, engine_plan
from loadtest.bench.phases.capacity import capacity_phase
from loadtest.bench.phases.fanout import fanout_phase
from loadtest.bench.phases.intake import intake_phase
from loadtest.bench.phases.overhead import overhead_phase
from loadtest.bench.profiling import Profiler
from loadtest.bench.report import goal_rows, print_table, write_outputs
from loadtest.monitor import PhaseUsage


async def bench(args: argparse.Namespace) -> int:
    """Run the phases ``args`` asks for; the exit status (0: every measurement ran, 1: an error, 2: an engine left processes)."""
    mode = MODES["tiny" if args.tiny else "quick" if args.quick else "full"]
    if args.overlap is None:
        args.overlap = mode.name == "tiny"
    subscribers = args.subscribers or mode.subscribers
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    prof = Profiler(args.profile, args.out)
    usages: list[PhaseUsage] = []
    result: dict[str, Any] = {
        "meta": {
            "mode": mode.name,
            "mode_settings": asdict(mode),
            "overlapped_engines": args.overlap,
            "command": " ".join([".venv/bin/python", "-m", "loadtest.bench", *sys.argv[1:]]),
            "started_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "client": f"aiohttp {aiohttp.__version__}, {type(asyncio.get_running_loop()).__module__} loop",
            "load_avg_start": [round(x, 2) for x in os.getloadavg()],
            "cpu_probe_ms_start": cpu_probe_ms(),
            "others_at_start": others_on_machine([]),
            "noise": "shared 2-core machine: the client and other people's tests run beside the engine; see cpu_by_phase",
        }
    }
    engines = Engines(args, stamp, engine_plan(args.capacity_concurrency, args.only))
    status = 0
    try:
        # A: idle memory, then intake
        if not args.only or "intake" in args.only:
            engine = await engines.get("intake")
            await asyncio.sleep(mode.idle_settle_s)
            idle = await asyncio.to_thread(engine.watch.memory) if engine.watch else {}
            result["memory"] = {"idle_engine": "intake", **{f"idle_{k}": round(v, 1) for k, v in idle.items()}}
            result["intake"] = await intake_phase(engine, mode, args.ceiling_path, usages, prof)
            await engines.release("intake")
        # B: capacity
        if not args.only or "capacity" in args.only:
            engine = await engines.get("capacity")
            result["capacity"] = await capacity_phase(engine, mode, args.capacity_concurrency, usages, prof)
            await engines.release("capacity")
        # C: overhead and fan-out at default venue timings
        if not args.only or "default-timings" in args.only:
            engine = await engines.get("default-timings")
            await asyncio.sleep(mode.idle_settle_s)  # Ray and Serve finish starting up: a running engine is measured
            result["overhead"] = await overhead_phase(engine, mode, QUOTE_MS, usages)
            result["fanout"] = await fanout_phase(engine, mode, subscribers, args.per_order, usages)
            await engines.release("default-timings")
    except BaseException as exc:
        status = 1
        result["error"] = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {result['error']}")
        if not isinstance(exc, Exception):
            raise
    finally:
        await engines.close()
        memory = result.setdefault("memory", {})
        loaded = [u for u in usages if u.rss_peak_mb > 0]
        if loaded:
            peak = max(loaded, key=lambda u: u.rss_peak_mb)
            memory.update(
                load_rss_mb=round(peak.rss_peak_mb, 1),
                load_pss_mb=round(max(u.pss_peak_mb for u in loaded), 1),
                load_processes=peak.processes_peak,
                load_phase=peak.name,
                peak_rss_mb_by_phase={u.name: round(u.rss_peak_mb, 1) for u in loaded},
            )
        result["cpu_by_phase"] = [u.as_dict() for u in usages]
        result["engines"] = [e.summary() for e in engines.started()]
        result["profiles"] = prof.results
        result["meta"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
        result["meta"]["cpu_probe_ms_end"] = cpu_probe_ms()
        result["meta"]["finished_at"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        rows = goal_rows(result)
        json_path, csv_path = write_outputs(args.out, stamp, result, rows)
        print_table(result, rows)
        print(f"\nwrote {json_path} and {csv_path}")
    left = [e.name for e in engines.started() if e.left_after_sigterm]
    if left and status == 0:
        log(f"engine processes outlived SIGTERM in: {left} (killed by pid; see engines[].left_after_sigterm)")
        status = 2
    return status
