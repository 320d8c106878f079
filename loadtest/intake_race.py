"""Durable intake, ours against a peer server, side by side: ``python -m loadtest.intake_race --peer-url URL``.

Both servers get the same closed-loop load (:func:`loadtest.clients.http_load`: aiohttp, keep-alive, the
same pre-encoded MARKET bodies, no ``Idempotency-Key``) in alternation, ours then the peer, ``--rounds``
times at each concurrency, so a machine that slows down in the middle slows both. A 202 is the only
success. Per server and concurrency it prints every run, then the pooled figures (requests over time,
p50/p99 of all latencies) and ours over the peer's; and each server's own CPU per request (its processes,
not the shared PostgreSQL and Redis: ours always, the peer's with ``--peer-pid``), the figure a busy
machine moves least.

Ours is started here (:class:`loadtest.engine_run.EngineRun`: its own database, Redis prefix in db 12,
Ray temp dir and port, all removed after) with the intake benchmark's settings, unless ``--url`` names a
running one. The peer is whatever ``--peer-url`` answers; this script never starts or cleans it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from loadtest.bench.modes import ACCOUNT_LIFTED
from loadtest.clients import HttpRun, http_load, order_bodies, percentile, rounded
from loadtest.engine_run import EngineRun
from loadtest.monitor import label

PATH = "/api/orders/execute"
INTAKE_ENV = {**ACCOUNT_LIFTED, "OEE_RATE_LIMIT_PER_MINUTE": "60"}
"""The intake benchmark's engine (loadtest/bench/modes.py): orders pile up in the queue instead of running."""


Processes = Callable[[], list[psutil.Process]]


def cpu_seconds(processes: Processes | None) -> dict[str, float]:
    """CPU seconds so far of each process (by pid and label): a server's own work, not PostgreSQL's or Redis's."""
    out: dict[str, float] = {}
    for proc in processes() if processes is not None else []:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            out[f"{proc.pid} {label(proc)}"] = times.user + times.system
    return out


def tree(pid: int) -> Processes:
    def processes() -> list[psutil.Process]:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]

    return processes


def pooled(runs: list[HttpRun]) -> dict[str, Any]:
    """All runs of one server at one concurrency as one: requests over summed time, percentiles of every latency."""
    latencies = [ms for run in runs for ms in run.latencies_ms]
    seconds = sum(run.duration_s for run in runs)
    ok = sum(run.ok for run in runs)
    done = ok + sum(sum(run.errors.values()) for run in runs)
    return {
        "rps": round(ok / seconds, 1) if seconds else 0.0,
        "p50_ms": rounded(percentile(latencies, 50)),
        "p99_ms": rounded(percentile(latencies, 99)),
        "errors": done - ok,
        "error_kinds": dict(sum((run.errors for run in runs), Counter())),
        "client_cpu_ms_per_request": rounded(1000 * sum(r.client_cpu_s for r in runs) / max(1, done), 3),
    }


def add_cpu(summary: dict[str, Any], runs: list[HttpRun], spent: list[dict[str, float]]) -> None:
    """The server's CPU per request over the runs, and its busiest processes' share of it."""
    done = sum(r.ok + sum(r.errors.values()) for r in runs)
    by_process: dict[str, float] = {}
    for one in spent:
        for name, seconds in one.items():
            by_process[name] = by_process.get(name, 0.0) + seconds
    total = sum(by_process.values())
    if not by_process or not done:
        return
    summary["server_cpu_ms_per_request"] = round(1000 * total / done, 3)
    top = sorted(by_process.items(), key=lambda kv: -kv[1])[:6]
    summary["top_processes_ms_per_request"] = {name.split(" ", 1)[1]: round(1000 * s / done, 3) for name, s in top}


async def race(
    targets: dict[str, str],
    concurrencies: list[int],
    rounds: int,
    seconds: float,
    warmup_s: float,
    processes: dict[str, Processes | None],
) -> dict[str, Any]:
    bodies = order_bodies()
    spec: dict[str, Any] = {"method": "POST", "path": PATH, "expect": 202, "bodies": bodies, "idempotency_keys": False}
    for name, url in targets.items():
        print(f"warm-up {name} ({url}) {warmup_s:g} s", flush=True)
        await http_load(url, concurrency=10, duration_s=warmup_s, label=f"warm-up {name}", **spec)
    results: dict[str, Any] = {}
    for conc in concurrencies:
        runs: dict[str, list[HttpRun]] = {name: [] for name in targets}
        spent: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for round_ in range(1, rounds + 1):
            for name, url in targets.items():
                before = await asyncio.to_thread(cpu_seconds, processes.get(name))
                run = await http_load(url, concurrency=conc, duration_s=seconds, label=f"{name} c={conc} #{round_}", **spec)
                after = await asyncio.to_thread(cpu_seconds, processes.get(name))
                spent[name].append({k: v - before[k] for k, v in after.items() if k in before})
                runs[name].append(run)
                d = run.as_dict()
                print(
                    f"  c={conc:<3} round {round_} {name:<5} {d['rps']:>8.1f} req/s  p50 {d['p50_ms']} ms  p99 {d['p99_ms']} ms"
                    f"  errors {d['errors']} {d['error_kinds'] or ''}  client {d['client_cpu_ms_per_request']} ms CPU/req",
                    flush=True,
                )
        summary: dict[str, Any] = {name: pooled(r) for name, r in runs.items()}
        for name in targets:
            add_cpu(summary[name], runs[name], spent[name])
        ours, peer = summary["ours"], summary["peer"]
        summary["ratio"] = round(ours["rps"] / peer["rps"], 2) if peer["rps"] else None
        summary["pairs"] = [round(o.rps / p.rps, 2) if p.rps else None for o, p in zip(runs["ours"], runs["peer"], strict=True)]
        results[f"c{conc}"] = summary
    return results


def print_cpu(results: dict[str, Any]) -> None:
    for conc, s in results.items():
        for name in ("ours", "peer"):
            if "server_cpu_ms_per_request" in s[name]:
                top = ", ".join(f"{k} {v}" for k, v in s[name]["top_processes_ms_per_request"].items())
                print(f"{conc} {name}: {s[name]['server_cpu_ms_per_request']} ms of server CPU per request ({top})")


def print_table(results: dict[str, Any]) -> None:
    print("\n| | ours req/s | ours p50/p99 ms | errors | peer req/s | peer p50/p99 ms | errors | ours / peer (pairs) |")
    print("|---|---|---|---|---|---|---|---|")
    for conc, s in results.items():
        o, p = s["ours"], s["peer"]
        pairs = ", ".join(f"{r:.2f}" for r in s["pairs"] if r is not None)
        print(
            f"| intake {conc} | {o['rps']:,.0f} | {o['p50_ms']} / {o['p99_ms']} | {o['errors']} | {p['rps']:,.0f} "
            f"| {p['p50_ms']} / {p['p99_ms']} | {p['errors']} | **{s['ratio']}x** ({pairs}) |"
        )


async def main_async(args: argparse.Namespace) -> int:
    engine: EngineRun | None = None
    try:
        processes: dict[str, Processes | None] = {"peer": tree(args.peer_pid) if args.peer_pid else None}
        if args.url:
            ours_url = args.url.rstrip("/")
        else:
            env = dict(INTAKE_ENV)
            for item in args.engine_env:
                key, _, value = item.partition("=")
                env[key] = value
            engine = EngineRun("intake-race", env, Path(args.log))
            print(f"starting our engine (log {args.log})", flush=True)
            await engine.start()
            print(f"  healthy after {engine.start_s:.1f} s on {engine.url}", flush=True)
            ours_url = engine.url
            processes["ours"] = engine.watch.processes if engine.watch is not None else None
        targets = {"ours": ours_url, "peer": args.peer_url.rstrip("/")}
        started = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())
        results = await race(targets, args.concurrency, args.rounds, args.seconds, args.warmup, processes)
        print_table(results)
        print_cpu(results)
        if args.json:
            text = json.dumps({"started": started, "argv": sys.argv, "results": results}, indent=2)
            await asyncio.to_thread(Path(args.json).write_text, text)
        return 0
    finally:
        if engine is not None:
            with contextlib.suppress(Exception):
                await engine.stop()
            print(f"our engine stopped ({engine.stop_s:.1f} s), its database and Redis keys dropped", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-url", required=True, help="the other server, e.g. http://127.0.0.1:3100")
    parser.add_argument("--url", help="a running engine of ours instead of starting one")
    parser.add_argument("--peer-pid", type=int, help="the peer's process id: its CPU per request is reported too")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--rounds", type=int, default=3, help="alternations per concurrency (ours, peer, ...)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--engine-env", action="append", default=[], metavar="KEY=VALUE", help="extra OEE_* for our engine")
    parser.add_argument("--log", default="/tmp/oee-intake-race.log")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
