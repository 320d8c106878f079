"""EngineSupervisor: owns the engine's actors when the app is deployed with ``serve deploy`` (a cluster).

The Serve application builder (``serve_app.build_from_env``) runs in a short-lived task, and an
actor fate-shares with its owner, so the builder cannot own the engine's actors. A detached,
named supervisor (one per cluster, on the head with the other singletons) owns them, keeps the
dispatcher's and price watcher's loops running after a restart (as ``serve_app.main`` does in the
foreground), and hands out the handles the ingress needs.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from actors.bootstrap import EngineActors, start_actors, stop_actors
from engine.models import VenueName
from engine.settings import Settings

log = logging.getLogger("actors.supervisor")

SUPERVISOR = "engine_supervisor"


class EngineSupervisor:
    """Owns the engine's actors for a deployed application; one per cluster."""

    def __init__(self, settings: Settings) -> None:
        assert settings.redis_url and settings.database_url
        self._actors: EngineActors = start_actors(settings, settings.redis_url, settings.database_url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, daemon=True)
        self._thread.start()

    def _supervise(self) -> None:
        import serve_app

        while not self._stop.wait(2.0):
            serve_app._supervise(self._actors)

    def hub(self) -> Any:
        return self._actors.hub

    def venues(self) -> dict[VenueName, Any]:
        return self._actors.venues

    def actors(self) -> EngineActors:
        return self._actors

    def stop(self) -> None:
        self._stop.set()
        stop_actors(self._actors)
