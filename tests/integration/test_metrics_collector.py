"""The metrics collector on a real local Ray: it merges what the engine's actors counted for real orders,
reads the live gauges, and keeps totals monotonic when an executor's process is killed and restarts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import ray

from engine.instruments import HTTP_REQUESTS, WEBSOCKETS
from engine.intake import Accepted, OrderIntake
from engine.metrics import Buckets, Family, Registry
from engine.models import OrderRequest
from tests.integration.test_engine_actors import wait_terminal

pytestmark = pytest.mark.usefixtures("ray_local")

STAGES = ("queue_wait", "routing", "building", "landing", "end_to_end")


async def submit(intake: OrderIntake, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        outcome = await intake.submit(OrderRequest(token_in="SOL", token_out="USDC", amount=1.0, order_type="MARKET"), time.time() * 1000)
        assert isinstance(outcome, Accepted)
        ids.append(outcome.order_id)
    return ids


def scrape(actors: Any) -> dict[str, Family]:
    families: list[Family] = ray.get(actors.metrics.scrape.remote(None), timeout=60)
    return {family.metric.name: family for family in families}


def count(families: dict[str, Family], name: str, *labels: str) -> float:
    value = families[name].samples.get(tuple(labels), 0.0)
    return float(value.count) if isinstance(value, Buckets) else float(value)


async def test_the_collector_merges_what_the_actors_counted(engine_factory, intake, journal) -> None:
    actors, _ = engine_factory()
    ids = await submit(intake, 4)
    await wait_terminal(journal, ids)

    families = scrape(actors)
    assert count(families, "oee_orders_finished_total", "confirmed", "MARKET") == 4
    for stage in STAGES:
        assert count(families, "oee_stage_seconds", stage) == 4, stage
    for venue in ("raydium", "meteora"):
        assert count(families, "oee_venue_requests_total", venue, "quote", "ok") == 4, venue
        assert count(families, "oee_venue_request_seconds", venue, "quote") == 4, venue
    swaps = sum(count(families, "oee_venue_requests_total", venue, "swap", "ok") for venue in ("raydium", "meteora"))
    assert swaps == 4
    assert count(families, "oee_retries_total") == 0
    assert count(families, "oee_orders_running") == 0 and count(families, "oee_orders_waiting") == 0
    assert 0 < count(families, "oee_rate_limiter_tokens") <= 100
    roles = {labels[0] for labels in families["oee_metrics_sources"].samples}
    assert {"OrderExecutor", "Dispatcher", "PriceWatcher", "RaydiumQuoter", "MeteoraQuoter"} <= roles


async def test_totals_stay_monotonic_across_an_executor_restart(engine_factory, intake, journal) -> None:
    actors, _ = engine_factory()
    await wait_terminal(journal, await submit(intake, 3))
    assert count(scrape(actors), "oee_orders_finished_total", "confirmed", "MARKET") == 3

    executor = actors.executors[0]
    before = ray.get(actors.metrics.sources.remote())
    ray.kill(executor, no_restart=False)  # the process dies; Ray starts a new one (max_restarts=-1)
    deadline = time.monotonic() + 60
    while True:  # the new process answers the collector as a new source
        seen = [scrape(actors)["oee_orders_finished_total"].samples.get(("confirmed", "MARKET"), 0.0)]
        now = ray.get(actors.metrics.sources.remote())
        if set(now) - set(before):
            break
        assert seen == [3.0], "a total went down while the executor restarted"
        assert time.monotonic() < deadline, "the restarted executor never reported"
        await asyncio.sleep(0.5)

    await wait_terminal(journal, await submit(intake, 2))
    families = scrape(actors)
    assert count(families, "oee_orders_finished_total", "confirmed", "MARKET") == 5  # 3 before the restart + 2 after
    assert count(families, "oee_stage_seconds", "end_to_end") == 5


async def test_a_replica_push_is_merged_and_its_last_one_drops_its_gauges(engine_factory) -> None:
    actors, _ = engine_factory()
    requests, sockets = HTTP_REQUESTS.metric, WEBSOCKETS.metric
    replica = Registry()  # an ingress replica's own, as its reporter pushes it
    replica.counter(requests).inc("/health", "GET", "200", by=5)
    replica.gauge(sockets).set(3)

    assert ray.get(actors.metrics.push.remote(replica.snapshot("Ingress")))
    families = scrape(actors)
    assert count(families, "oee_http_requests_total", "/health", "GET", "200") == 5
    assert count(families, "oee_websocket_connections") == 3
    assert ("Ingress",) in families["oee_metrics_sources"].samples

    replica.counter(requests).inc("/health", "GET", "200")
    assert ray.get(actors.metrics.push.remote(replica.snapshot("Ingress", final=True)))
    families = scrape(actors)
    assert count(families, "oee_http_requests_total", "/health", "GET", "200") == 6
    assert count(families, "oee_websocket_connections") == 0
    assert ("Ingress",) not in families["oee_metrics_sources"].samples
