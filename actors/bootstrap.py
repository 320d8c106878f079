"""Creating, supervising and stopping the engine's actors. Every actor option lives here."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import ray

from actors.chain_node import ChainNode
from actors.dispatcher import Dispatcher
from actors.executor import OrderExecutor
from actors.metrics import MetricsCollector
from actors.placement import pool_options, singleton_options
from actors.price_watcher import PriceWatcher
from actors.quoter import quoter_class
from actors.rate_limiter import RateLimiter
from actors.status_hub import StatusHub
from engine.models import VenueName
from engine.settings import Settings
from venues.registry import configured

log = logging.getLogger("actors.bootstrap")

NAMESPACE = "oee"


def _remote(cls: type) -> Any:
    """``ray.remote`` typed loosely: actor handles are dynamic."""
    return ray.remote(cls)


_LIGHT: dict[str, Any] = {"num_cpus": 0, "max_concurrency": 10_000, "max_restarts": -1}


@dataclass
class EngineActors:
    hub: Any
    limiter: Any
    venues: dict[VenueName, Any]
    executors: list[Any]
    dispatcher: Any
    watcher: Any
    metrics: Any = None
    chain: Any = None
    """The ChainNode (the embedded chain); None when settling through JSON-RPC."""

    def all(self) -> list[Any]:
        collector = [self.metrics] if self.metrics is not None else []
        chain = [self.chain] if self.chain is not None else []
        return [self.dispatcher, self.watcher, *self.executors, *self.venues.values(), self.limiter, self.hub, *collector, *chain]


def start_actors(settings: Settings, *, recover: bool = True, suffix: str = "") -> EngineActors:
    """Create every actor (settings carry the resolved store URLs), wait until they are up, start the
    dispatcher (which recovers open orders)."""
    hub = _remote(StatusHub).options(name=f"status_hub{suffix}", **_LIGHT, **singleton_options()).remote()
    limiter = (
        _remote(RateLimiter)
        .options(name=f"rate_limiter{suffix}", **_LIGHT, **singleton_options())
        .remote(settings.rate_limit_per_minute, settings.start_burst)
    )
    chain = None
    if not settings.chain_rpc_url:
        chain = _remote(ChainNode).options(name=f"chain_node{suffix}", **_LIGHT, **singleton_options()).remote(settings)
    venues = {
        spec.name: _remote(quoter_class(spec.name))
        .options(name=f"{spec.name}_quoter{suffix}", **_LIGHT, **pool_options())
        .remote(settings, spec, chain)
        for spec in configured(settings)
    }
    watcher = _remote(PriceWatcher).options(name=f"price_watcher{suffix}", **_LIGHT, **singleton_options()).remote(settings, venues)
    executors = [
        _remote(OrderExecutor)
        .options(name=f"order_executor_{i}{suffix}", **_LIGHT, **pool_options())
        .remote(settings, hub, venues, watcher, chain)
        for i in range(settings.executor_pool_size)
    ]
    # Every actor up and connected before the first order (a venue opens its connections on first use,
    # which the first order would otherwise pay for in its routing stage).
    ray.get(
        [e.ready.remote() for e in executors] + [v.stats.remote() for v in venues.values()] + [hub.stats.remote(), limiter.stats.remote()]
    )
    dispatcher = (
        _remote(Dispatcher).options(name=f"dispatcher{suffix}", **_LIGHT, **singleton_options()).remote(settings, executors, limiter)
    )
    if recover:
        ray.get([watcher.ensure_started.remote(), dispatcher.start.remote()])
    metrics = (
        _remote(MetricsCollector)
        .options(name=f"metrics_collector{suffix}", **_LIGHT, **singleton_options())
        .remote(hub, limiter, dispatcher, watcher, executors, venues, gauge_ttl_s=max(30.0, 3 * settings.metrics_push_s))
    )
    return EngineActors(hub, limiter, venues, executors, dispatcher, watcher, metrics, chain)


def supervise(actors: EngineActors) -> None:
    """Restart the dispatcher's and watcher's loops if their actor was restarted (Ray re-runs only the
    constructor). Called every few seconds by whoever owns the actors."""
    try:
        if ray.get(actors.dispatcher.ensure_started.remote(), timeout=10):
            log.warning("dispatcher was restarted; its loops are running again")
        if ray.get(actors.watcher.ensure_started.remote(), timeout=10):
            log.warning("price watcher was restarted; waiting orders reloaded from postgres")
    except Exception as exc:  # the next round tries again
        log.warning("actor supervision failed", extra={"error": f"{type(exc).__name__}: {exc}"})


def stop_actors(actors: EngineActors, drain_s: float = 0.0) -> None:
    """Stop dispatching (open orders stay recoverable in PostgreSQL), close pools, kill the actors."""
    with contextlib.suppress(Exception):
        ray.get(actors.dispatcher.stop.remote(drain_s), timeout=drain_s + 5)
    closers = [a.close.remote() for a in [actors.watcher, *actors.executors, *actors.venues.values()]]
    with contextlib.suppress(Exception):
        ray.get(closers, timeout=5)
    for actor in actors.all():
        with contextlib.suppress(Exception):
            ray.kill(actor, no_restart=True)
