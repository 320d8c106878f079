"""What keys and limits cost per request at intake: one engine, one client, rounds with and without a key,
alternating, plus the pieces timed on their own.

    .venv/bin/python -m loadtest.auth_cost                 # ~3 minutes; --rounds 6 --seconds 5 --concurrency 10

The engine runs in open local mode (no OEE_ADMIN_KEY), where a request without a key is the account
``local`` and a request with one is authenticated like any in protected mode (the key looked up, cached
and verified). The per-account limits are lifted so that no request is refused: each POST still pays
the risk checks (priced from the cached market view) and the admission script (one Redis round trip),
in both arms. So the arms differ by authentication alone, and the admission script and the risk check
are timed separately (the same calls, against the same Redis, from this process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from engine.accounts import AccountLimits, hash_secret, same_secret, split_key
from engine.adapters.admission_store import AdmissionStore
from engine.risk import MarketView, PoolMark, assess
from loadtest.bench.modes import ACCOUNT_LIFTED
from loadtest.clients import http_load, order_bodies, percentile
from loadtest.engine_run import EngineRun

ENV = {
    **ACCOUNT_LIFTED,
    "OEE_RATE_LIMIT_PER_MINUTE": "60",  # orders pile up in the queue: intake is what is measured
    "OEE_QUOTE_LATENCY_MS": "20",
    "OEE_SWAP_LATENCY_MS": "40-80",
}


async def _key(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.post(f"{url}/api/keys", json={"account": "bench", "scopes": ["trade"]}) as resp:
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["key"])


async def arms(url: str, key: str, rounds: int, seconds: float, concurrency: int) -> dict[str, list[dict[str, float]]]:
    bodies = order_bodies()
    post: dict[str, Any] = {"method": "POST", "path": "/api/orders/execute", "expect": 202, "bodies": bodies}
    for headers in ({}, {"Authorization": f"Bearer {key}"}):  # warm both paths
        await http_load(url, concurrency=concurrency, duration_s=2, label="warm-up", headers=headers, **post)
    out: dict[str, list[dict[str, float]]] = {"no key": [], "key": []}
    for n in range(rounds):
        order = [("no key", {}), ("key", {"Authorization": f"Bearer {key}"})]
        if n % 2:
            order.reverse()  # alternate which arm goes first
        for name, headers in order:
            run = await http_load(url, concurrency=concurrency, duration_s=seconds, label=name, headers=headers, **post)
            errors = sum(run.errors.values())
            row = {
                "rps": round(run.rps, 1),
                "p50_ms": round(percentile(run.latencies_ms, 50) or 0, 2),
                "p99_ms": round(percentile(run.latencies_ms, 99) or 0, 2),
                "errors": errors,
            }
            out[name].append(row)
            print(f"round {n + 1} {name:>6}: {row}", flush=True)
    return out


async def admission_calls(redis_url: str, prefix: str, calls: int = 2000) -> dict[str, float]:
    """The admission script alone: one account, limits that admit everything, one call at a time."""
    client = aioredis.Redis.from_url(redis_url)
    store = AdmissionStore(client, prefix)
    limits = AccountLimits(1e6, 10**7, 10**7, 1e15, 1e15, 1000, 100)
    latencies = []
    try:
        await client.hset(f"{prefix}trading:state", mapping={"_init": "1", "_version": "0"})
        for _ in range(calls):
            t0 = time.perf_counter()
            await store.admit(
                account="probe", key_id="", scope="SOL/USDC", limits=limits, max_queued=10**9, order_id=uuid.uuid4().hex, order_usd=1.0
            )
            latencies.append((time.perf_counter() - t0) * 1000)
        await client.delete(f"{prefix}acct:open:probe", f"{prefix}acct:rate:probe")
    finally:
        await client.aclose()
    return {"p50_ms": round(statistics.median(latencies), 3), "p99_ms": round(percentile(latencies, 99) or 0, 3)}


def pure_costs(n: int = 100_000) -> dict[str, float]:
    """Microseconds per call of the pure parts: key parsing and verification, and the risk check."""
    key = "oee_0123456789abcdef_" + "A" * 43
    stored = hash_secret("A" * 43)
    t0 = time.perf_counter()
    for _ in range(n):
        parts = split_key(key)
        assert parts is not None
        same_secret(hash_secret(parts[1]), stored)
    verify_us = (time.perf_counter() - t0) / n * 1e6
    view = MarketView([PoolMark("r", "SOL", "USDC", 150.0, 1e7), PoolMark("r", "USDC", "SOL", 1 / 150, 6e4)])
    limits = AccountLimits(50, 100, 1000, 1e7, 1e6, 0.1, 100)
    t0 = time.perf_counter()
    for _ in range(n):
        assess("SOL", "USDC", 1.5, view, limits)
    assess_us = (time.perf_counter() - t0) / n * 1e6
    return {"key_parse_and_verify_us": round(verify_us, 2), "risk_assess_us": round(assess_us, 2)}


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.auth_cost")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("loadtest/results"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H-%MZ", time.gmtime())
    load_before = os.getloadavg()[0]
    log_path = Path(tempfile.mkstemp(prefix="oee-auth-cost-", suffix=".log")[1])
    engine = EngineRun("auth-cost", ENV, log_path)
    await engine.start()
    try:
        key = await _key(engine.url)
        results = await arms(engine.url, key, args.rounds, args.seconds, args.concurrency)
        admission = await admission_calls(engine.stores.redis_url, f"{engine.redis_prefix}probe:")
    finally:
        await engine.stop()
    pure = pure_costs()
    figures: dict[str, Any] = {}
    for name, rows in results.items():
        tag = name.replace(" ", "_")
        figures[f"{tag}_median_req_s"] = statistics.median(r["rps"] for r in rows)
        figures[f"{tag}_median_p50_ms"] = statistics.median(r["p50_ms"] for r in rows)
        figures[f"{tag}_rounds_req_s"] = [r["rps"] for r in rows]
    a, b = figures["no_key_median_req_s"], figures["key_median_req_s"]
    figures["key_cost_per_request_ms_from_medians"] = round(1000 * args.concurrency * (1 / b - 1 / a), 3) if a and b else None
    figures["admission_script_p50_ms"] = admission["p50_ms"]
    figures["admission_script_p99_ms"] = admission["p99_ms"]
    figures.update(pure)
    commit = (
        await asyncio.to_thread(subprocess.run, ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    ).stdout.strip()
    summary: dict[str, Any] = {
        "run": stamp,
        "tool": "loadtest.auth_cost",
        "command": ".venv/bin/python -m loadtest.auth_cost "
        f"--rounds {args.rounds} --seconds {args.seconds:g} --concurrency {args.concurrency}",
        "code": commit,
        "machine": f"shared 2-core machine, load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
        "figures": figures,
        "notes": "POST /api/orders/execute at the given concurrency, rounds alternating with and without a key on one open-mode "
        "engine; both arms pay the risk check and the admission script, timed alone from this process (Redis round trip).",
        "rounds": results,
    }
    print(json.dumps(summary, indent=2))
    (args.out / f"{stamp}-auth_cost.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
