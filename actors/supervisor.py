"""EngineSupervisor: owns the engine's actors on a cluster (``serve deploy``), one per cluster.

An actor fate-shares with its owner, and a Serve replica comes and goes; so the first replica
creates this detached, named supervisor (:func:`engine_handles`), which prepares the database,
starts the actors, keeps the dispatcher's and watcher's loops running after a restart, and hands
out the handles the edge needs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import ray

from actors.bootstrap import NAMESPACE, EngineActors, start_actors, stop_actors, supervise
from actors.placement import singleton_options
from engine.adapters.postgres import prepare_database
from engine.adapters.stores import urls
from engine.models import VenueName
from engine.settings import Settings

log = logging.getLogger("actors.supervisor")

SUPERVISOR = "engine_supervisor"


class EngineSupervisor:
    def __init__(self, settings: Settings) -> None:
        database_url, _ = urls(settings)
        asyncio.run(prepare_database(database_url))
        self._actors: EngineActors = start_actors(settings)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, daemon=True)
        self._thread.start()

    def _supervise(self) -> None:
        while not self._stop.wait(2.0):
            supervise(self._actors)

    def hub(self) -> Any:
        return self._actors.hub

    def venues(self) -> dict[VenueName, Any]:
        return self._actors.venues

    def metrics(self) -> Any:
        return self._actors.metrics

    def chain(self) -> Any:
        """The ChainNode (None when settling through JSON-RPC): the replicas cannot find it by name, as
        it lives in this actor's job namespace, not the engine's."""
        return self._actors.chain

    def actors(self) -> EngineActors:
        return self._actors

    def stop(self) -> None:
        self._stop.set()
        stop_actors(self._actors)


def engine_handles(settings: Settings) -> tuple[Any, dict[VenueName, Any], Any]:
    """The hub, venue and chain handles of this cluster's engine, creating its supervisor if none runs yet."""
    supervisor = _supervisor(settings)
    hub, venues, chain = ray.get([supervisor.hub.remote(), supervisor.venues.remote(), supervisor.chain.remote()])
    return hub, venues, chain


def engine_metrics(settings: Settings) -> Any:
    """The metrics collector of this cluster's engine (see :func:`engine_handles`)."""
    return ray.get(_supervisor(settings).metrics.remote())


def _supervisor(settings: Settings) -> Any:
    supervisor_class: Any = ray.remote(EngineSupervisor)
    return supervisor_class.options(
        name=SUPERVISOR,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,
        max_concurrency=4,
        **singleton_options(),
    ).remote(settings)
