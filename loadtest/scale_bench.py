"""Scaling figure: orders/s of the engine's actors on a 1-node and a 3-node Ray cluster, with 10, 20
and 40 executors, at the default venue latency and with the rate limit lifted.

    .venv/bin/python loadtest/scale_bench.py                      # 10,20,40 executors x 1,3 nodes
    .venv/bin/python loadtest/scale_bench.py --executors 10 --nodes 3 --waves 2

Each node is a raylet of ``ray.cluster_utils.Cluster`` on this machine (1 CPU each, its own temp
dir), so "3 nodes" adds raylets and spreads the actors over them, not CPUs. For each executor count
N the engine runs with N executors (SPREAD over the nodes) and a concurrency cap of N, and the
script submits N x waves orders at once straight into the stores (no HTTP), then measures

    orders/s = orders / (last terminal event - first routing event)

With the default quote (200 ms) and swap (2-3 s) latency an order takes about 2.8 s, so the
ceiling is N / 2.8 orders/s; the table shows how close each layout gets. PostgreSQL and Redis:
127.0.0.1:5432 and :6379 when they listen (else embedded ones), in a database and key prefix of
its own that are dropped at the end. Results also go to loadtest/results/scale_bench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import ray  # noqa: E402
import redis  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

from actors.bootstrap import start_actors, stop_actors  # noqa: E402
from engine.adapters.postgres import PostgresJournal, create_pool  # noqa: E402
from engine.adapters.redis_store import RedisOrders  # noqa: E402
from engine.intake import OrderIntake  # noqa: E402
from engine.models import OrderStatus  # noqa: E402
from runtime.embedded import Dependencies, scratch_servers, with_database  # noqa: E402
from tests.chain_scan import landed_per_order, scan_node  # noqa: E402
from tests.cluster.harness import actor_nodes, per_node, start_cluster, stop_cluster  # noqa: E402
from tests.cluster.orders import engine_settings, submit, wait_terminal  # noqa: E402
from tests.conftest import TestStores, reset_stores  # noqa: E402

TEST_REDIS_DB = 13


def _stores(deps: Dependencies, scratch: Path) -> tuple[str, TestStores]:
    pg_admin, redis_base = scratch_servers(scratch, deps)
    name = f"oee_bench_{os.getpid()}_{secrets.token_hex(3)}"
    return pg_admin, TestStores(with_database(pg_admin, name), f"{redis_base}/{TEST_REDIS_DB}", f"oee-bench-{secrets.token_hex(4)}:")


async def _admin(url: str, sql: str) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def _one_run(stores: TestStores, executors: int, waves: int, nodes_run: Any) -> dict[str, Any]:
    await reset_stores(stores)
    settings = engine_settings(
        stores.database_url,
        stores.redis_url,
        stores.redis_prefix,
        executor_pool_size=executors,
        max_concurrent_orders=executors,
    )  # default venue latency: 200 ms quotes, 2-3 s swaps
    started = time.monotonic()
    actors = start_actors(settings, suffix=f"_{secrets.token_hex(3)}")
    try:
        up_s = time.monotonic() - started
        placement = per_node(nodes_run, actor_nodes(actors.executors))
        # Warm the quoters (their pools open on first use) so the first wave is not slower.
        ray.get([v.quote.remote("SOL", "USDC", 1.0) for v in actors.venues.values()])
        pool = await create_pool(stores.database_url, min_size=1, max_size=4)
        client = aioredis.Redis.from_url(stores.redis_url)
        try:
            journal = PostgresJournal(pool)
            intake = OrderIntake(journal, RedisOrders(client, stores.redis_prefix))
            count = executors * waves
            ids = await submit(intake, count)
            trails = await wait_terminal(journal, ids, timeout_s=60 + 10 * waves * 3)
            first = min(e.at for events in trails.values() for e in events if e.status is OrderStatus.ROUTING)
            last = max(events[-1].at for events in trails.values())
            started_at = {i: min(e.at for e in events if e.status is OrderStatus.ROUTING) for i, events in trails.items()}
            latencies = [(events[-1].at - started_at[i]) / 1000 for i, events in trails.items()]
            statuses = [events[-1].status.value for events in trails.values()]
            landed = landed_per_order(await scan_node(actors.chain))  # counted on the chain, by memo
            swaps = [landed[i] for i in ids]
        finally:
            await client.aclose()
            await pool.close()
        peak = ray.get(actors.dispatcher.stats.remote())["peak_running"]
    finally:
        stop_actors(actors)
    span_s = (last - first) / 1000
    return {
        "executors": executors,
        "orders": count,
        "span_s": round(span_s, 2),
        "orders_per_s": round(count / span_s, 2),
        "ceiling_per_s": round(executors / statistics.mean(latencies), 2),
        "latency_p50_s": round(statistics.median(latencies), 2),
        "latency_max_s": round(max(latencies), 2),
        "confirmed": statuses.count("confirmed"),
        "failed": statuses.count("failed"),
        "max_swaps_per_order": max(swaps),
        "peak_running": peak,
        "executors_per_node": placement,
        "actors_up_s": round(up_s, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executors", default="10,20,40", help="executor counts (= concurrency caps), comma-separated")
    parser.add_argument("--nodes", default="1,3", help="node counts (head + workers), comma-separated")
    parser.add_argument("--waves", type=int, default=4, help="orders per executor (default 4)")
    parser.add_argument("--json", type=Path, default=ROOT / "loadtest" / "results" / "scale_bench.json")
    args = parser.parse_args()
    counts = [int(x) for x in args.executors.split(",")]
    layouts = [int(x) for x in args.nodes.split(",")]

    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    deps = Dependencies(redis_url="", database_url="")
    scratch = Path(tempfile.mkdtemp(prefix="oee-bench-"))
    pg_admin, stores = _stores(deps, scratch)
    database = stores.database_url.rsplit("/", 1)[1].split("?")[0]
    asyncio.run(_admin(pg_admin, f'CREATE DATABASE "{database}"'))
    results: list[dict[str, Any]] = []
    load = os.getloadavg()
    try:
        in_use = asyncio.run(_admin(pg_admin, "SELECT count(*) FROM pg_stat_activity"))
        limit = asyncio.run(_admin(pg_admin, "SHOW max_connections"))
        print(f"postgres connections in use {in_use} of {limit}; the engine needs about one per executor plus ~20", flush=True)
        for nodes in layouts:
            started = time.monotonic()
            run = start_cluster(workers=nodes - 1, namespace="oee-bench")
            print(f"\n{nodes} node(s) up in {time.monotonic() - started:.1f}s", flush=True)
            try:
                for n in counts:
                    result = {"nodes": nodes, **asyncio.run(_one_run(stores, n, args.waves, run))}
                    results.append(result)
                    print(json.dumps(result), flush=True)
            finally:
                alive = stop_cluster(run)
                if alive:
                    print(f"WARNING: processes of the cluster still alive: {alive}", flush=True)
    finally:
        client = redis.Redis.from_url(stores.redis_url)
        keys = list(client.scan_iter(match=f"{stores.redis_prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
        asyncio.run(_admin(pg_admin, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        deps.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"\nload average before the run: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs")
    print("\n| nodes | executors (= cap) | orders | orders/s | ceiling N/latency | p50 latency s | confirmed/failed | executors/node |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        spread = "/".join(str(v) for v in r["executors_per_node"].values())
        print(
            f"| {r['nodes']} | {r['executors']} | {r['orders']} | {r['orders_per_s']:.1f} | {r['ceiling_per_s']:.1f} | "
            f"{r['latency_p50_s']:.2f} | {r['confirmed']}/{r['failed']} | {spread} |"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"load_average": load, "cpus": os.cpu_count(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
