"""The engine's actors on a three-node Ray cluster (head + 2 workers): where they run, orders
flowing through executors on several nodes, a stream followed from a worker node, and one
admission limit for the whole cluster."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
import yaml  # type: ignore[import-untyped]
from ray import serve
from ray.actor import ActorHandle

from actors.bootstrap import EngineActors, start_actors, stop_actors
from engine.models import OrderStatus
from runtime.embedded import free_port
from tests.cluster.conftest import Stores
from tests.cluster.harness import ROOT, ClusterRun, actor_nodes, actor_pids, node_resource, per_node, start_cluster, stop_cluster
from tests.cluster.orders import SLIPPAGE_BPS, check_swaps, engine_settings, submit, wait_terminal
from tests.cluster.probe import StreamProbe
from tests.e2e.wsclient import follow, statuses

pytestmark = pytest.mark.timeout(150)

_WORKER_PIDS: set[int] = set()  # actor processes the tests saw: they must be gone after shutdown too


@pytest.fixture(scope="module")
def three_nodes() -> Iterator[ClusterRun]:
    started = time.monotonic()
    run = start_cluster(workers=2)
    print(f"\ncluster up (head + 2 workers) in {time.monotonic() - started:.1f}s")
    try:
        yield run
    finally:
        started = time.monotonic()
        alive = stop_cluster(run, _WORKER_PIDS)
        print(f"\ncluster down in {time.monotonic() - started:.1f}s; {len(_WORKER_PIDS)} actor processes checked")
        assert not alive, f"processes of this cluster still alive after shutdown: {alive}"


def _start(run: ClusterRun, db: Stores, **overrides: Any) -> EngineActors:
    settings = engine_settings(db.urls.database_url, db.urls.redis_url, db.urls.redis_prefix, **overrides)
    started = time.monotonic()
    actors = start_actors(settings, suffix=f"_{secrets.token_hex(3)}")
    _WORKER_PIDS.update(actor_pids(actors.all()))
    print(f"engine actors up in {time.monotonic() - started:.1f}s")
    return actors


def _completed(executor: Any) -> int:
    return int(executor.completed)


def executed_per_node(run: ClusterRun, actors: EngineActors, nodes: list[str]) -> dict[str, int]:
    done = ray.get([e.__ray_call__.remote(_completed) for e in actors.executors])
    by_node = dict.fromkeys(per_node(run, nodes), 0)
    for node, n in zip(nodes, done, strict=True):
        by_node[run.label(node)] += n
    return by_node


async def test_actors_spread_over_nodes_and_orders_flow(three_nodes: ClusterRun, db: Stores) -> None:
    run = three_nodes
    actors = _start(run, db, executor_pool_size=6, max_concurrent_orders=12, quote_latency_ms=20.0, swap_latency_ms=(200.0, 400.0))
    try:
        singles = actor_nodes([actors.hub, actors.limiter, actors.dispatcher, actors.watcher])
        executors = actor_nodes(actors.executors)
        quoters = actor_nodes(list(actors.venues.values()))
        print(f"executors per node: {per_node(run, executors)}; quoters on {[run.label(n) for n in quoters]}")
        print(f"hub, rate limiter, dispatcher, price watcher on {[run.label(n) for n in singles]}")
        assert set(singles) == {run.head_id}, "the singletons belong on the head (it advertises oee_head)"
        assert len(set(executors)) == 3, f"SPREAD should use all three nodes: {per_node(run, executors)}"
        assert len(set(quoters)) == 2, "SPREAD should put the two quoters on different nodes"

        # A Serve replica stand-in on worker 1 follows orders through the hub (on the head).
        probe_class: Any = ray.remote(StreamProbe)  # actor handles are dynamic (as in actors/bootstrap.py)
        probe = probe_class.options(resources={node_resource(1): 0.01}).remote(actors.hub, db.urls.database_url)
        assert await probe.node_id.remote() == run.node_ids[1]
        _WORKER_PIDS.update(actor_pids([probe]))

        started = time.monotonic()
        ids = await submit(db.intake, 24)
        followed = probe.follow.remote(ids[:8], 60.0)
        trails = await wait_terminal(db.journal, ids, timeout_s=60)
        took = time.monotonic() - started
        for order_id, events in trails.items():
            order = await db.journal.get(order_id)
            assert order is not None and order.status is OrderStatus.CONFIRMED, order
            assert events[-1].status is OrderStatus.CONFIRMED
            await check_swaps(actors.chain, order)
        streams = await followed
        for order_id, stream in streams.items():
            assert stream["outcome"] == "closed" and stream["close_code"] == 1000, (order_id, stream)
            assert stream["seqs"] == list(range(1, len(stream["seqs"]) + 1)), stream  # each event once, in order
            assert stream["statuses"][0] == "pending" and stream["statuses"][-1] == "confirmed", stream
        print(f"stream on worker1: {streams[ids[0]]['statuses']}")

        by_node = executed_per_node(run, actors, executors)
        print(f"{len(ids)} orders confirmed in {took:.1f}s; orders executed per node: {by_node}")
        assert sum(by_node.values()) == len(ids)
        assert sum(1 for n in by_node.values() if n > 0) >= 2, f"only one node's executors did the work: {by_node}"

        # One scrape counts every node's work: the collector (on the head) asks each executor for its metrics.
        assert actor_nodes([actors.metrics]) == [run.head_id]
        families = {family.metric.name: family for family in ray.get(actors.metrics.scrape.remote(None), timeout=60)}
        counted = families["oee_orders_finished_total"].samples.get(("confirmed", "MARKET"))
        reporting = families["oee_metrics_sources"].samples.get(("OrderExecutor",))
        print(f"metrics: {counted} confirmed orders counted, from {reporting} executors on {len(set(executors))} nodes")
        assert counted == len(ids) and reporting == 6
        ray.kill(probe)
    finally:
        stop_actors(actors)


async def test_rate_limit_holds_across_nodes(three_nodes: ClusterRun, db: Stores) -> None:
    """One token bucket for the cluster: executors on three nodes still start 5 orders a second."""
    run = three_nodes
    actors = _start(
        run,
        db,
        executor_pool_size=3,
        max_concurrent_orders=12,
        rate_limit_per_minute=300.0,
        rate_limit_burst=1,
        quote_latency_ms=20.0,
        swap_latency_ms=(800.0, 1000.0),  # ~5 orders in flight at 5/s: the dispatcher uses every executor
    )
    try:
        executors = actor_nodes(actors.executors)
        ids = await submit(db.intake, 16)
        trails = await wait_terminal(db.journal, ids, timeout_s=60)
        starts = sorted(min(e.at for e in events if e.status is OrderStatus.ROUTING) / 1000 for events in trails.values())
        span = starts[-1] - starts[0]
        worst = max(sum(1 for t in starts if s <= t < s + 1.0) for s in starts)
        by_node = executed_per_node(run, actors, executors)
        print(f"16 orders started over {span:.2f}s, at most {worst} in any 1 s window (limit 5/s); executed per node: {by_node}")
        assert span >= 15 / 5 - 0.2
        assert worst <= 6  # 5 per second; one more for the granularity of event timestamps vs. grants
        assert sum(1 for n in by_node.values() if n > 0) == 3, f"executors on every node started orders: {by_node}"
    finally:
        stop_actors(actors)


def _builder() -> str:
    """serve_app's own builder once it has one; until then the reference one in tests/cluster."""
    import serve_app

    return "serve_app:build_from_env" if hasattr(serve_app, "build_from_env") else "tests.cluster.serve_builder:build_from_env"


def _serve_config(run: ClusterRun, db: Stores, port: int, path: Path) -> dict[str, Any]:
    """deploy/serve_config.yaml, pointed at this test's stores, port and builder."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "serve_config.yaml").read_text())
    config["proxy_location"] = "HeadOnly"  # the proxies of all three "nodes" would bind one port of this one machine
    config["http_options"].update(host="127.0.0.1", port=port)
    app = config["applications"][0]
    app["import_path"] = _builder()
    app["runtime_env"]["env_vars"].update(
        OEE_HOST="127.0.0.1",  # as http_options above: open local mode (the shipped 0.0.0.0 needs OEE_ADMIN_KEY)
        OEE_REDIS_URL=db.urls.redis_url,
        OEE_DATABASE_URL=db.urls.database_url,
        OEE_REDIS_PREFIX=db.urls.redis_prefix,
        OEE_QUOTE_LATENCY_MS="20",
        OEE_SWAP_LATENCY_MS="200-400",
        OEE_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return config


def _replicas() -> list[Any]:
    names = [a for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == "serve" and "Ingress" in a["name"]]
    return [ray.get_actor(a["name"], namespace="serve") for a in names]


@pytest.mark.slow
async def test_serve_config_runs_a_replica_on_every_node(three_nodes: ClusterRun, db: Stores, tmp_path: Path) -> None:
    """`serve run deploy/serve_config.yaml` on the cluster: one Ingress replica per node (min_replicas 3,
    max_replicas_per_node), orders in over HTTP and out over WebSocket through the proxy."""
    run = three_nodes
    port = free_port()
    config = _serve_config(run, db, port, tmp_path / "serve_config.yaml")
    started = time.monotonic()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    cli = [
        str(ROOT / ".venv" / "bin" / "serve"),
        "run",
        "--non-blocking",
        "--address",
        run.cluster.address,
        str(tmp_path / "serve_config.yaml"),
    ]
    result = await asyncio.to_thread(subprocess.run, cli, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    try:
        while True:
            status = serve.status().applications.get("oee")
            if status is not None and status.status == "RUNNING":
                break
            assert time.monotonic() - started < 120, f"application not running: {status}"
            assert status is None or status.status != "DEPLOY_FAILED", status.message
            await asyncio.sleep(1.0)
        replicas = _replicas()
        nodes = actor_nodes(replicas)
        _WORKER_PIDS.update(actor_pids(replicas))
        print(
            f"serve run ({config['applications'][0]['import_path']}): RUNNING in {time.monotonic() - started:.1f}s; "
            f"Ingress replicas per node: {per_node(run, nodes)}"
        )
        assert len(replicas) == 3 and len(set(nodes)) == 3

        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            assert (await client.get("/health")).status_code == 200
            # The engine's actors (the chain among them) start beside the app: a POST answers 503
            # "try again" until the wallets can be read from the chain.
            while (await client.get("/api/wallet")).status_code != 200:
                assert time.monotonic() - started < 180, "the chain never answered through the ingress"
                await asyncio.sleep(0.5)
            ids = []
            for i in range(6):
                body = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 0.5 + i * 0.1, "orderType": "MARKET", "slippageBps": SLIPPAGE_BPS}
                response = await client.post("/api/orders/execute", json=body)
                assert response.status_code == 202, response.text
                ids.append(response.json()["orderId"])
            streams = await asyncio.gather(*(follow(f"ws://127.0.0.1:{port}", i, timeout_s=60) for i in ids))
            for order_id, (messages, code) in zip(ids, streams, strict=True):
                assert code == 1000 and statuses(messages)[-1] == "confirmed", (order_id, messages)
                assert (await client.get(f"/api/orders/{order_id}")).json()["status"] == "confirmed"
        print(f"6 orders over HTTP through the head's proxy, followed to confirmed over WebSocket: {statuses(streams[0][0])}")
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        from tests.cluster.serve_builder import SUPERVISOR

        try:
            supervisor: ActorHandle[Any] | None = ray.get_actor(SUPERVISOR, namespace="oee")
        except ValueError:
            supervisor = None
        if supervisor is not None:
            _WORKER_PIDS.update(actor_pids([supervisor]))
            ray.get(supervisor.stop.remote(), timeout=30)
            ray.kill(supervisor)


async def test_wait_for_nodes_script_sees_the_cluster(three_nodes: ClusterRun) -> None:
    """cluster.yaml deploys after `deploy/wait_for_nodes.py --config <the launcher's config>` returns:
    with cluster.yaml's two worker_ips it waits for 3 nodes, which this cluster has."""
    script = [str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "deploy" / "wait_for_nodes.py"), "--address", three_nodes.cluster.address]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    ok = await asyncio.to_thread(
        subprocess.run,
        [*script, "--config", str(ROOT / "cluster.yaml"), "--timeout", "60"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert ok.returncode == 0 and "3 of 3 nodes alive" in ok.stdout, ok.stdout + ok.stderr[-2000:]
    short = await asyncio.to_thread(subprocess.run, [*script, "4", "--timeout", "2"], env=env, capture_output=True, text=True, timeout=90)
    assert short.returncode == 1 and "3 of 4 nodes alive" in short.stderr, short.stdout + short.stderr[-2000:]
