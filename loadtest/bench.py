"""One-command benchmark of the order execution engine: starts the engine itself, measures, cleans up.

Run from the project root. It uses PostgreSQL on 127.0.0.1:5432 (user postgres with trust) and Redis on
127.0.0.1:6379 when they listen, else (or with ``--embedded``) servers of its own, stopped at the end::

    .venv/bin/python -m loadtest.bench                  # full: about 6 minutes
    .venv/bin/python -m loadtest.bench --quick          # about 2 minutes
    .venv/bin/python -m loadtest.bench --quick --tiny   # about 1.5 minutes (the smoke test's mode)

It starts three engines one after the other (``python serve_app.py``, each with its own free port,
PostgreSQL database, Redis prefix in db 12 and Ray temp dir; see :mod:`loadtest.engine_run`), because
each measurement needs other settings:

* **A, intake** (``OEE_RATE_LIMIT_PER_MINUTE=60``, the rest default: orders pile up in the queue instead of
  loading the CPU). ``POST /api/orders/execute`` at 10 and 50 connections, and the ceiling: a request on the
  same Serve deployment that touches no storage. The brief suggested ``GET /api/orders/order_0000000000000_00000000``,
  but that id is well formed, so the handler looks it up in Redis and then PostgreSQL (serve_app.py,
  ``get_order``: ``parse_order_id`` accepts it, then ``self.orders.get`` and ``self.journal.get``); the
  ceiling is therefore ``GET /docs`` (FastAPI's Swagger page, a small HTML string; ``--ceiling-path`` to
  change). Durability cost = ceiling req/s / intake req/s at the same concurrency. Idle memory is taken here.
* **B, capacity** (venue latency 0, fault rate 0, rate limit lifted, ``OEE_MAX_CONCURRENT_ORDERS=200``):
  orders are submitted for the window while the engine's backlog (accepted minus terminal, polled from
  PostgreSQL every 0.25 s) stays under 2x the concurrency limit, so the engine is always saturated but
  the drain afterwards is short. Orders/s = terminal rows in PostgreSQL over the window (after a ramp).
  Afterwards every accepted order must be terminal in PostgreSQL; any that is not is listed.
* **C, default venue timings** (quote 200 ms, swap 2-3 s, rate limit lifted, concurrency default 10):
  - *overhead*: orders submitted closed loop, at most 8 in flight (below the concurrency limit, so no
    order waits for a slot); the first few (``warm_up_orders``, the engine's first orders after start-up)
    are reported apart (``warm_up_overhead_ms``). Per order, its end-to-end time minus the venue time it
    actually spent: ``overhead = total - quote_latency - venue_swap`` with ``total = confirmed.at -
    pending.at`` (``order_events.payload->>'at'``, epoch ms, stamped when each transition starts) and
    ``venue_swap = executed_at - sent_at`` of its swaps in ``venue_swaps`` (first leg's arrival at a
    venue to the last leg's landing, stamped by the venue). A simulated quote takes exactly
    ``quote_latency``, and a routing's quotes run at once. The overhead is the sum of five stages, all
    reported: dispatch (``routing.at - pending.at``: durable intake, queue, hand-off, loading), routing
    excess (``building.at - routing.at - quote_latency``: the actor round trips to the quoters), build to
    submit (the claim's durable write), to venue (``sent_at - submitted.at``) and after landing
    (``confirmed.at - executed_at``: the simulated chain's own ledger write, counted against the engine,
    then the answer back). ``slowest`` lists the five worst orders by stage.
    Routing ratio = routing stage / quote latency. Only orders with one attempt and confirmed are used.
  - *fan-out*: N WebSocket subscribers, 20 per order, on orders submitted first (they queue behind the
    concurrency limit, so most of their transitions happen while subscribers are connected), connected
    in batches. Latency = receipt time - the event's ``ts`` (epoch ms set by the executor), over *live*
    events only (``ts`` after the client's handshake; older ones are replayed history and only count for
    completeness). Also reported: the same latency over events stamped after the last subscriber
    connected (``steady_state``: no handshakes competing with the fan-out). Dropped = events of the order
    in PostgreSQL that a subscriber did not receive.
* **Memory**: summed RSS (and PSS) of the engine process, its descendants and every process whose command
  line holds the engine's Ray temp dir: idle (engine A after start-up) and the peak under load (any phase).
* **CPU**: for each measured phase, CPU time of every engine process (by Ray process title), the shared
  PostgreSQL/Redis servers, this client, and everything else on the machine (other people's tests).

Figures are noisy: this 2-core machine is shared, the client runs on it, and other people's engines and
tests may run at the same time (the report shows the CPU they took in each phase and the load average).
Output: a table on stdout, ``bench-<stamp>.json`` and ``bench-<stamp>.csv`` (and the engines' logs) in
``--out``. Exit status 0 when every measurement ran (whatever the figures), 2 if a raylet or other engine
process outlived the engine's SIGTERM (it is then killed by pid), 1 on an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil

from actors.gc_tuning import tune_garbage_collection
from engine.embedded import Dependencies, scratch_servers
from engine.lifecycle import TERMINAL as LIFECYCLE_TERMINAL
from loadtest.clients import (
    LoopLag,
    OpenSockets,
    Subscription,
    http_load,
    order_bodies,
    percentile,
    rounded,
    submit_orders,
    subscribe,
)
from loadtest.engine_run import EngineRun, Stores
from loadtest.monitor import PhaseMonitor, PhaseUsage, label
from runtime.process import ROOT

TERMINAL = sorted(s.value for s in LIFECYCLE_TERMINAL)  # the engine's own definition
INTAKE_GOALS = {10: 750.0, 50: 1425.0}  # 1.5x of 500 and 950 req/s
LIFECYCLE = ["pending", "routing", "building", "submitted", "confirmed"]

DEFAULT_VENUE = {"OEE_QUOTE_LATENCY_MS": "200", "OEE_SWAP_LATENCY_MS": "2000-3000", "OEE_FAULT_RATE": "0"}
LIFTED = {"OEE_RATE_LIMIT_PER_MINUTE": "6000000", "OEE_RATE_LIMIT_BURST": "10000"}


@dataclass(frozen=True)
class Mode:
    name: str
    intake_s: float
    warmup_s: float
    capacity_s: float
    capacity_ramp_s: float
    drain_timeout_s: float
    overhead_warmup: int
    overhead_orders: int
    overhead_inflight: int
    subscribers: int
    per_order: int
    connect_batch: int
    handshakes: int
    idle_settle_s: float


MODES = {
    "full": Mode("full", 15, 2, 30, 3, 120, 8, 200, 8, 2000, 20, 200, 100, 3),
    "quick": Mode("quick", 3, 1, 5, 1, 60, 8, 16, 8, 100, 20, 100, 50, 2),
    "tiny": Mode("tiny", 1, 0.5, 2, 0.5, 40, 1, 4, 4, 20, 20, 20, 20, 1),
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def dist(values: list[float], digits: int = 2) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": rounded(percentile(values, 50), digits),
        "p99": rounded(percentile(values, 99), digits),
        "max": rounded(max(values), digits) if values else None,
    }


# -- profiling (optional) ---------------------------------------------------------------------------


PROFILED = ("ray::ProxyActor", "ray::ServeReplica", "ray::OrderExecutor", "ray::Dispatcher", "ray::StatusHub", "serve_app.py")


async def profile(engine: EngineRun, out: Path, tag: str, delay_s: float, seconds: float) -> list[dict[str, Any]]:
    """py-spy record (raw, non-blocking, 50 Hz, busy threads only) of the engine's main actors; their busiest functions."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None or engine.watch is None or seconds < 1:
        return []
    await asyncio.sleep(delay_s)
    procs = [p for p in await asyncio.to_thread(engine.watch.processes) if label(p).startswith(PROFILED)]
    jobs = []
    for proc in procs:
        path = out / f"profile-{tag}-{label(proc).replace(':', '_')}-{proc.pid}.txt"
        cmd = [
            spy,
            "record",
            "--nonblocking",
            "-r",
            "50",
            "-d",
            str(int(seconds)),
            "-f",
            "raw",
            "-o",
            str(path),
            "-p",
            str(proc.pid),
        ]
        job = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        jobs.append((proc, path, job))
    results = []
    for proc, path, job in jobs:
        await job.wait()
        results.append(
            {
                "process": label(proc),
                "pid": proc.pid,
                "file": str(path),
                "busy_samples": _samples(path),
                **_shares(path),
                "top_functions_inclusive": _top_frames(path),
            }
        )
    return results


def _samples(path: Path) -> int:
    try:
        return sum(
            int(line.rpartition(" ")[2]) for line in path.read_text(errors="replace").splitlines() if line.rpartition(" ")[2].isdigit()
        )
    except OSError:
        return 0


_ENGINE_FILES = ("(serve_app.py:", "(engine/", "(actors/")


def _shares(path: Path) -> dict[str, float]:
    """Share of py-spy's busy samples with the engine's own code (serve_app.py, engine/, actors/) on the stack.

    Rough: py-spy (without --native) counts some time blocked in Ray's C++ core worker as busy, so the share of
    everything under Ray's loops is overstated and the engine's share is, if anything, understated.
    """
    engine = total = 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    for line in lines:
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        engine += int(n) * any(marker in f for f in stack.split(";") for marker in _ENGINE_FILES)
    return {"engine_code_pct": round(100 * engine / total, 1)} if total else {}


_GENERIC_FRAMES = (
    "Thread.run ",
    "Thread._bootstrap",
    "_worker (concurrent",
    "main_loop",
    "run_forever",
    "_run_once",
    "Handle._run",
    "<module>",
)


def _top_frames(path: Path, count: int = 12) -> list[str]:
    """Functions present in the most samples (inclusive), wrappers of every stack left out."""
    inclusive: Counter[str] = Counter()
    total = 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        for frame in set(stack.split(";")):
            if frame and not any(g in frame for g in _GENERIC_FRAMES):
                inclusive[frame] += int(n)
    return [f"{100 * n / total:.0f}% {frame}" for frame, n in inclusive.most_common(count)] if total else []


# -- A: intake ------------------------------------------------------------------------------------


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
        "PostgreSQL (serve_app.py get_order), so it is not a no-op; the ceiling is this path instead",
        "runs": runs,
        "durability_cost_ratio": cost,
    }


# -- B: capacity ----------------------------------------------------------------------------------


class Backlog:
    """Accepted ids (from the client) against terminal rows (from PostgreSQL), polled in the background."""

    POLL_S = 0.25

    def __init__(self, pool: asyncpg.Pool, database: str, role: str) -> None:
        self.pool = pool
        self.database = database
        self.role = role
        self.accepted: list[str] = []
        self.total = 0
        self.terminal = 0
        self.timeline: list[dict[str, float]] = []
        self.peak_connections = 0
        self.peak_server_connections = 0
        self._t0 = time.perf_counter()
        self._task: asyncio.Task[None] | None = None

    def on_ok(self, payload: bytes) -> None:
        self.accepted.append(json.loads(payload)["orderId"])

    @property
    def in_flight(self) -> int:
        return len(self.accepted) - self.terminal

    async def poll_once(self) -> None:
        row = await self.pool.fetchrow(
            "SELECT count(*) FILTER (WHERE status = ANY($1::text[])) AS terminal, count(*) AS total FROM orders", TERMINAL
        )
        conns = await self.pool.fetchrow(
            "SELECT count(*) FILTER (WHERE datname = $1 AND usename = $2) AS ours, count(*) AS total "
            "FROM pg_stat_activity WHERE backend_type = 'client backend'",
            self.database,
            self.role,
        )
        assert row is not None and conns is not None
        self.terminal, self.total = int(row["terminal"]), int(row["total"])
        self.peak_connections = max(self.peak_connections, int(conns["ours"]))
        self.peak_server_connections = max(self.peak_server_connections, int(conns["total"]))
        self.timeline.append(
            {
                "t": round(time.perf_counter() - self._t0, 3),
                "accepted": len(self.accepted),
                "in_pg": self.total,
                "terminal": self.terminal,
                "pg_conns": int(conns["ours"]),
            }
        )

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(asyncpg.PostgresError, OSError):
                await self.poll_once()
            await asyncio.sleep(self.POLL_S)

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._task = asyncio.create_task(self._run())

    def now(self) -> float:
        return time.perf_counter() - self._t0

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_all_terminal(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.terminal >= len(self.accepted) and self.total >= len(self.accepted):
                return True
            await asyncio.sleep(self.POLL_S)
        return False


def rate_between(timeline: list[dict[str, float]], start: float, end: float, key: str = "terminal") -> float | None:
    """Growth per second of ``key`` between the samples nearest to ``start`` and ``end`` (polls may be late)."""
    if len(timeline) < 2:
        return None
    first = min(timeline, key=lambda s: abs(s["t"] - start))
    last = min(timeline, key=lambda s: abs(s["t"] - end))
    if last["t"] <= first["t"]:
        return None
    return (last[key] - first[key]) / (last["t"] - first["t"])


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


# -- C: overhead and fan-out ------------------------------------------------------------------------


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
        # The venue's own time for each order's swaps (its legs run at once): from the first leg's
        # arrival at a venue to the last leg's landing, as the venues recorded them.
        swap_rows = await pool.fetch(
            "SELECT order_id, extract(epoch from min(sent_at)) * 1000 AS sent, extract(epoch from max(executed_at)) * 1000 AS landed "
            "FROM venue_swaps WHERE order_id = ANY($1::text[]) AND sent_at IS NOT NULL GROUP BY order_id",
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
            excluded["no swap recorded by a venue"] += 1
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
            "to_venue_ms (swap sent_at - submitted.at)": sent - at["submitted"],
            "after_landing_ms (confirmed.at - swap executed_at)": at["confirmed"] - landed,
        }
        overhead = total - quote_ms - (landed - sent)  # = the sum of the stages above
        if index < mode.overhead_warmup:
            cold.append(overhead)
            continue
        parts["overhead_ms"].append(overhead)
        for name, value in stages.items():
            parts[name].append(value)
        slowest.append(
            {"submitted_nth": index, "order_id": oid, "overhead_ms": round(overhead, 2)}
            | {k.split(" ")[0]: round(v, 2) for k, v in stages.items()}
        )
        parts["venue_swap_ms (executed_at - sent_at)"].append(landed - sent)
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
    # The client holds as many sockets as the replica: with CPython's default GC thresholds its own full
    # collections stalled its loop (up to ~60 ms), and a stalled client reads late events as slow ones.
    # The engine's thresholds for the replica (actors/gc_tuning.py) keep the client's measurement honest too.
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
        for _, status, ts, received in sub.events:
            if sub.connected_ms is not None and ts >= sub.connected_ms:
                live.append(received - ts)
                live_by_status[status].append(received - ts)
                stall = lag.stall_during(ts, received)
                if stall == 0:
                    unstalled.append(received - ts)
                elif received - ts > 50:
                    late_while_stalled += 1
                if ts >= all_connected_ms:
                    steady.append(received - ts)
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


# -- orchestration ------------------------------------------------------------------------------


class Profiler:
    """``--profile``: py-spy record of the main actors in the heaviest phases (off by default)."""

    def __init__(self, enabled: bool, out: Path) -> None:
        self.enabled = enabled
        self.out = out
        self.results: list[dict[str, Any]] = []

    def start(self, engine: EngineRun, tag: str, phase_s: float) -> asyncio.Task[list[dict[str, Any]]] | None:
        if not self.enabled:
            return None
        seconds = min(10.0, phase_s - 2)
        return asyncio.create_task(profile(engine, self.out, tag, 1.0, seconds))

    async def finish(self, task: asyncio.Task[list[dict[str, Any]]] | None) -> None:
        if task is not None:
            self.results.extend(await task)


def cpu_probe_ms(steps: int = 1_000_000, tries: int = 5) -> float:
    """How fast this machine runs Python right now: the median time of a fixed loop, in ms.

    The machine is shared (a VM beside other tenants): on one day the same code gave 485 and 246
    orders/s. The probe is only a rough gauge (a tight loop suffers less from a busy neighbour than
    the engine does); the engine's CPU per request or per order shows a slow machine better.
    """
    times = []
    for _ in range(tries):
        start = time.perf_counter()
        total = 0
        for i in range(steps):
            total += i
        times.append((time.perf_counter() - start) * 1000)
    return round(sorted(times)[tries // 2], 1)


def others_on_machine(own_dirs: list[str]) -> dict[str, int]:
    """Other people's Ray nodes and Serve replicas running now (a source of noise)."""
    raylets = replicas = 0
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        if any(d in cmd for d in own_dirs):
            continue
        raylets += "/raylet " in cmd or cmd.endswith("/raylet")
        replicas += cmd.startswith("ray::ServeReplica")
    return {"raylets": raylets, "serve_replicas": replicas}


OVERHEAD_STAGES = {
    "dispatch_ms": "dispatch",
    "routing_excess_ms": "quote excess",
    "build_to_submit_ms": "claim",
    "to_venue_ms": "to venue",
    "after_landing_ms": "after landing",
}


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
        add(f"intake POST c={c}", post.get("rps"), "req/s", f">= {INTAKE_GOALS[c]:.0f}", lambda v, c=c: v >= INTAKE_GOALS[c])
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


class Engines:
    """The run's engines, started and stopped one after another, or overlapped (``--overlap``, tiny's default).

    Overlapped, every engine starts at once and each is stopped in the background while the next phase
    runs: the smoke test fits its time limit, but each phase shares the CPU with idle or stopping engines,
    so its figures mean even less than usual.
    """

    def __init__(self, args: argparse.Namespace, stamp: str, plan: list[tuple[str, dict[str, str]]]) -> None:
        self.overlap = bool(args.overlap)
        self.runs = {
            name: EngineRun(
                name,
                env,
                args.out / f"bench-{stamp}-engine-{name}.log",
                extra_env=args.engine_env,
                pg_connection_limit=args.pg_connection_limit,
                stores=args.stores,
            )
            for name, env in plan
        }
        self._starts: dict[str, asyncio.Task[EngineRun]] = {}
        self._stops: list[asyncio.Task[None]] = []
        if self.overlap:
            for name in self.runs:
                self._starts[name] = asyncio.create_task(self._start(name))

    async def _start(self, name: str) -> EngineRun:
        engine = self.runs[name]
        shown = " ".join(f"{k}={v}" for k, v in engine.settings_env.items()) or "defaults"
        log(f"engine {name}: starting on port {engine.port} ({shown})")
        await engine.start()
        log(f"engine {name}: healthy after {engine.start_s:.1f} s")
        return engine

    async def get(self, name: str) -> EngineRun:
        if name not in self._starts:
            self._starts[name] = asyncio.create_task(self._start(name))
        return await self._starts[name]

    async def release(self, name: str) -> None:
        if self.overlap:
            self._stops.append(asyncio.create_task(self._stop(self.runs[name])))
        else:
            await self._stop(self.runs[name])

    @staticmethod
    async def _stop(engine: EngineRun) -> None:
        if engine.stopped:
            return
        log(f"engine {engine.name}: SIGTERM")
        await engine.stop()
        left = f"; LEFT BEHIND (killed): {engine.left_after_sigterm}" if engine.left_after_sigterm else "; no process left"
        log(f"engine {engine.name}: exited {engine.exit_code} after {engine.stop_s:.1f} s{left}")

    async def close(self) -> None:
        """Stop everything still running (after an error too), and wait for the background stops."""
        for task in self._starts.values():
            if not task.done():
                task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await asyncio.gather(*self._stops, return_exceptions=True)
        for engine in self.runs.values():
            with contextlib.suppress(Exception):
                await self._stop(engine)

    def started(self) -> list[EngineRun]:
        return [e for e in self.runs.values() if e.started]


async def bench(args: argparse.Namespace) -> int:
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
    quote_ms = float(DEFAULT_VENUE["OEE_QUOTE_LATENCY_MS"])
    capacity_env = {
        "OEE_QUOTE_LATENCY_MS": "0",
        "OEE_SWAP_LATENCY_MS": "0",
        "OEE_FAULT_RATE": "0",
        **LIFTED,
        "OEE_MAX_CONCURRENT_ORDERS": str(args.capacity_concurrency),
    }
    plan = [
        ("intake", {"OEE_RATE_LIMIT_PER_MINUTE": "60"}),
        ("capacity", capacity_env),
        ("default-timings", {**DEFAULT_VENUE, **LIFTED}),
    ]
    plan = [(name, env) for name, env in plan if not args.only or name in args.only]
    engines = Engines(args, stamp, plan)
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
            result["overhead"] = await overhead_phase(engine, mode, quote_ms, usages)
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short runs: 3 s intake, 5 s capacity, 100 subscribers")
    parser.add_argument("--tiny", action="store_true", help="smoke-test runs: 1 s intake, 2 s capacity, 20 subscribers")
    parser.add_argument("--out", type=Path, default=ROOT / "loadtest" / "results", help="directory for JSON, CSV and logs")
    parser.add_argument("--subscribers", type=int, default=0, help="fan-out subscribers (default: 2000, quick 100, tiny 20)")
    parser.add_argument("--per-order", type=int, default=20, help="fan-out subscribers per order")
    parser.add_argument("--capacity-concurrency", type=int, default=200, help="OEE_MAX_CONCURRENT_ORDERS of the capacity engine")
    parser.add_argument("--ceiling-path", default="/docs", help="the no-op GET used as the intake ceiling")
    parser.add_argument(
        "--overlap",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start all engines at once and stop each in the background (default: only with --tiny; figures suffer)",
    )
    parser.add_argument(
        "--pg-connection-limit",
        type=int,
        default=50,
        help="CONNECTION LIMIT of each engine's own PostgreSQL role (the server is shared); 0: connect as postgres, no limit",
    )
    parser.add_argument("--embedded", action="store_true", help="use PostgreSQL and Redis servers of its own even if the machine's listen")
    parser.add_argument("--profile", action="store_true", help="py-spy record the main actors during intake c=50 and capacity")
    parser.add_argument(
        "--only",
        action="append",
        choices=["intake", "capacity", "default-timings"],
        default=[],
        help="run only this engine's phases (repeatable; default-timings = overhead and fan-out); the report lacks the rest",
    )
    parser.add_argument(
        "--engine-env", action="append", default=[], metavar="KEY=VALUE", help="extra environment for every engine (experiments)"
    )
    args = parser.parse_args(argv)
    args.engine_env = dict(item.split("=", 1) for item in args.engine_env)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with contextlib.suppress(ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    try:
        import uvloop

        runner: Callable[..., int] = uvloop.run
    except ImportError:
        runner = asyncio.run

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)  # clean up (engines, databases, keys) on SIGTERM too
        return await bench(args)

    deps = Dependencies(redis_url="", database_url="")
    scratch = Path(tempfile.mkdtemp(prefix="oee-bench-stores-"))
    try:
        args.stores = resolve_stores(deps, scratch, args.embedded)
        return runner(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted; engines stopped and stores cleaned", file=sys.stderr)
        return 130
    finally:
        deps.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def resolve_stores(deps: Dependencies, scratch: Path, embedded: bool) -> Stores:
    """The machine's PostgreSQL and Redis where they listen, else embedded ones (stopped by ``deps.stop``)."""
    pg_admin, redis_base = scratch_servers(scratch, deps, embedded)
    if deps.embedded:
        log(f"embedded {' and '.join(deps.embedded)} started for this run")
    return Stores(pg_admin, f"{redis_base}/12")


if __name__ == "__main__":
    sys.exit(main())
