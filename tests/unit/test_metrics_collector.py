"""The collector's logic with fake actor handles (no Ray): it merges the actors' snapshots and the asking
replica's, keeps a silent actor's last counts, bounds a slow one, and reads the live gauges."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from actors import metrics as collector_module
from actors.metrics import MetricsCollector
from engine.metrics import Family, Kind, Metric, Registry

FINISHED = Metric("t_finished_total", Kind.COUNTER, "finished", ("status",))


class Method:
    """``handle.method.remote(*args)`` as an awaitable, like a Ray actor method."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def remote(self, *args: Any) -> Any:
        async def call() -> Any:
            answer = self.fn(*args)
            return await answer if asyncio.iscoroutine(answer) else answer

        return call()


class Handle:
    def __init__(self, **methods: Callable[..., Any]) -> None:
        for name, fn in methods.items():
            setattr(self, name, Method(fn))


def counting(role: str, registry: Registry) -> Handle:
    return Handle(metrics_snapshot=lambda: registry.snapshot(role))


def by_name(families: list[Family]) -> dict[str, Family]:
    return {family.metric.name: family for family in families}


@pytest.fixture
def engine() -> dict[str, Any]:
    executor, dispatcher, watcher = Registry("executor"), Registry("dispatcher"), Registry("watcher")
    executor.counter(FINISHED).inc("confirmed", by=4)
    state = {"executor_up": True, "breaker": "OPEN"}

    def executor_snapshot() -> Any:
        if not state["executor_up"]:
            raise RuntimeError("actor died")
        return executor.snapshot("OrderExecutor")

    handles = {
        "hub": Handle(),
        "limiter": Handle(level=lambda: -2.5),
        "dispatcher": Handle(metrics_snapshot=lambda: dispatcher.snapshot("Dispatcher"), stats=lambda: {"running": 7}),
        "watcher": Handle(metrics_snapshot=lambda: watcher.snapshot("PriceWatcher"), stats=lambda: {"watching": 2}),
        "executors": [Handle(metrics_snapshot=executor_snapshot)],
        "venues": {
            "raydium": Handle(metrics_snapshot=lambda: Registry("r").snapshot("RaydiumQuoter"), breaker_state=lambda: state["breaker"]),
            "meteora": Handle(metrics_snapshot=lambda: Registry("m").snapshot("MeteoraQuoter")),  # no breaker
        },
    }
    return {"handles": handles, "state": state, "executor": executor}


def collector_of(engine: dict[str, Any]) -> MetricsCollector:
    h = engine["handles"]
    return MetricsCollector(h["hub"], h["limiter"], h["dispatcher"], h["watcher"], h["executors"], h["venues"])


async def test_a_scrape_merges_every_actor_and_the_asking_replica(engine: dict[str, Any]) -> None:
    collector = collector_of(engine)
    replica = Registry("replica-1")
    replica.counter(FINISHED).inc("confirmed")

    families = by_name(await collector.scrape(replica.snapshot("Ingress")))

    assert families["t_finished_total"].samples == {("confirmed",): 5.0}
    assert families["oee_metrics_sources"].samples == {
        (role,): 1.0 for role in ("Ingress", "OrderExecutor", "Dispatcher", "PriceWatcher", "RaydiumQuoter", "MeteoraQuoter")
    }
    assert families["oee_rate_limiter_tokens"].samples == {(): -2.5}
    assert families["oee_orders_running"].samples == {(): 7.0}
    assert families["oee_orders_waiting"].samples == {(): 2.0}
    assert families["oee_venue_breaker_state"].samples == {("raydium", "open"): 1.0}  # meteora has no breaker
    assert [f.metric.name for f in families.values()] == sorted(families)


async def test_an_actor_that_stops_answering_keeps_its_last_counts(engine: dict[str, Any]) -> None:
    collector = collector_of(engine)
    await collector.scrape()
    engine["executor"].counter(FINISHED).inc("confirmed")  # counted, but never reported: the actor dies
    engine["state"]["executor_up"] = False

    families = by_name(await collector.scrape())
    assert families["t_finished_total"].samples == {("confirmed",): 4.0}


async def test_a_slow_actor_holds_a_scrape_up_only_for_its_timeout(engine: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collector_module, "ASK_TIMEOUT_S", 0.05)

    async def never() -> float:
        await asyncio.sleep(3600)
        return 0.0

    engine["handles"]["limiter"] = Handle(level=never)
    engine["state"]["breaker"] = {"state": "half_open"}
    collector = collector_of(engine)

    families = by_name(await asyncio.wait_for(collector.scrape(), 5))
    assert "oee_rate_limiter_tokens" not in families  # left out, not zero
    assert families["oee_venue_breaker_state"].samples == {("raydium", "half_open"): 1.0}
