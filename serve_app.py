"""The Ray Serve deployment of the HTTP/WebSocket edge (:mod:`api`), and its typed application builder.

Locally, :mod:`runtime.launcher` owns the engine's actors and binds their handles (``build_app``).
On a cluster, ``serve deploy deploy/serve_config.yaml`` calls :func:`build_from_env`, which has no
side effects: the first replica finds (or creates) the cluster's engine supervisor, which prepares
the database and starts the actors.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application

from actors.metrics import report_to, stop_reporting
from api.app import create_app
from api.deps import Edge, install
from engine.gc_tuning import tune_garbage_collection
from engine.logs import setup_logging
from engine.models import VenueName
from engine.settings import Settings

app = create_app()


@serve.deployment(graceful_shutdown_timeout_s=3, health_check_period_s=5)
@serve.ingress(app)
class Ingress:
    """One replica of the edge: the routes are :mod:`api.routes`; this holds the replica's :class:`Edge`."""

    def __init__(self, settings: Settings, hub: Any = None, venues: dict[VenueName, Any] | None = None, metrics: Any = None) -> None:
        setup_logging(settings.log_level)
        tune_garbage_collection()
        chain = None
        if hub is None or venues is None:
            from actors.supervisor import engine_handles, engine_metrics

            hub, venues, chain = engine_handles(settings)
            metrics = engine_metrics(settings)
        install(Edge(settings, hub, venues, chain))
        report_to(metrics, "Ingress", settings.metrics_push_s)

    def __del__(self) -> None:
        stop_reporting()  # a last push: the collector keeps this replica's counts and drops its gauges


def build_app(settings: Settings, hub: Any = None, venues: dict[VenueName, Any] | None = None, metrics: Any = None) -> Application:
    """The application for ``settings``; without handles, each replica asks the cluster's supervisor."""
    deployment: Any = Ingress
    spread = {"max_replicas_per_node": settings.ingress_max_replicas_per_node} if settings.ingress_max_replicas_per_node else {}
    built: Application = deployment.options(
        num_replicas=settings.ingress_replicas,
        max_ongoing_requests=settings.max_ongoing_requests,
        ray_actor_options={"num_cpus": 0},
        logging_config={"enable_access_log": settings.access_log},
        **spread,
    ).bind(settings, hub, venues, metrics)
    return built


class AppArgs(BaseModel):
    """The application's ``args`` (a Serve config's ``args:``, or ``serve run serve_app:build_from_env
    key=value``). Everything else comes from the ``OEE_*`` environment (``runtime_env.env_vars``)."""

    model_config = ConfigDict(extra="forbid")

    ingress_replicas: int | None = Field(default=None, ge=1, description="Overrides OEE_INGRESS_REPLICAS")
    max_ongoing_requests: int | None = Field(default=None, ge=1, description="Overrides OEE_MAX_ONGOING_REQUESTS")


def build_from_env(args: AppArgs) -> Application:
    """The typed application builder for a cluster. Redis and PostgreSQL must be set and reachable
    from every node. (This module has no ``from __future__ import annotations``: Serve reads the
    annotation of ``args`` to validate the config's ``args`` into :class:`AppArgs`.)"""
    settings = Settings(**args.model_dump(exclude_none=True))
    if not settings.redis_url or not settings.database_url:
        raise ValueError("on a cluster, set OEE_REDIS_URL and OEE_DATABASE_URL to servers every node can reach")
    problem = settings.protection_problem()
    if problem is not None:  # OEE_HOST states the bind (the Serve config's http_options.host)
        raise ValueError(problem)
    return build_app(settings)
