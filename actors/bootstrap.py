"""Creating and stopping the engine's actors. Every actor option lives here."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import ray

from actors.dispatcher import Dispatcher
from actors.executor import OrderExecutor
from actors.placement import pool_options, singleton_options
from actors.price_watcher import PriceWatcher
from actors.quoter import MeteoraQuoter, RaydiumQuoter
from actors.rate_limiter import RateLimiter
from actors.status_hub import StatusHub
from engine.models import VenueName
from engine.settings import Settings

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

    def all(self) -> list[Any]:
        return [self.dispatcher, self.watcher, *self.executors, *self.venues.values(), self.limiter, self.hub]


def start_actors(settings: Settings, redis_url: str, database_url: str, *, recover: bool = True, suffix: str = "") -> EngineActors:
    """Create every actor, wait until they are up, start the dispatcher (which recovers open orders)."""
    hub = _remote(StatusHub).options(name=f"status_hub{suffix}", **_LIGHT, **singleton_options()).remote()
    limiter = (
        _remote(RateLimiter)
        .options(name=f"rate_limiter{suffix}", **_LIGHT, **singleton_options())
        .remote(settings.rate_limit_per_minute, settings.rate_limit_burst)
    )
    venues = {
        VenueName.RAYDIUM: _remote(RaydiumQuoter)
        .options(name=f"raydium_quoter{suffix}", **_LIGHT, **pool_options())
        .remote(settings, database_url),
        VenueName.METEORA: _remote(MeteoraQuoter)
        .options(name=f"meteora_quoter{suffix}", **_LIGHT, **pool_options())
        .remote(settings, database_url),
    }
    watcher = (
        _remote(PriceWatcher)
        .options(name=f"price_watcher{suffix}", **_LIGHT, **singleton_options())
        .remote(settings, redis_url, database_url, venues)
    )
    executors = [
        _remote(OrderExecutor)
        .options(name=f"order_executor_{i}{suffix}", **_LIGHT, **pool_options())
        .remote(settings, redis_url, database_url, hub, venues, watcher)
        for i in range(settings.executor_pool_size)
    ]
    # Every actor up and connected before the first order (a quoter opens its PostgreSQL pool on first use:
    # ~100 ms the first order would otherwise pay in its routing stage).
    ray.get(
        [e.ready.remote() for e in executors] + [v.stats.remote() for v in venues.values()] + [hub.stats.remote(), limiter.stats.remote()]
    )
    dispatcher = (
        _remote(Dispatcher)
        .options(name=f"dispatcher{suffix}", **_LIGHT, **singleton_options())
        .remote(settings, redis_url, database_url, executors, limiter)
    )
    if recover:
        ray.get([watcher.ensure_started.remote(), dispatcher.start.remote()])
    return EngineActors(hub, limiter, venues, executors, dispatcher, watcher)


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
