"""Running the engine in the foreground: ``python -m runtime`` (what ``bash scripts/run`` does).

Resolves Redis and PostgreSQL (embedded ones when none is configured or listening), prepares the
database, starts Ray (with Serve's HAProxy ingress), the engine's actors and the Serve application,
supervises the actors, and on SIGINT/SIGTERM stops it all: Serve, HAProxy, the actors, Ray, the
embedded servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from engine.logs import setup_logging
from engine.settings import get_settings

log = logging.getLogger("runtime.launcher")

ROOT = Path(__file__).resolve().parents[1]
STOP_MARGIN_S = 20.0
"""How long the orderly stop may take beyond the ingress drain before it is cut short."""


OPEN_MODE_WARNING = (
    "OPEN LOCAL MODE: OEE_ADMIN_KEY is not set, so this engine asks no one for a key. Every order belongs to the "
    "account 'local' and anyone who reaches {url} may trade, cancel and halt. Set OEE_ADMIN_KEY before exposing it."
)


def main() -> int:
    """Run the engine until SIGINT or SIGTERM."""
    try:
        problem = get_settings().protection_problem()
    except ValidationError as exc:  # without the inputs: one of them may be a secret
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False, include_url=False))
        problem = f"refusing to start: invalid settings: {problems}"
    if problem is not None:  # before anything starts: no store, no Ray, no port
        print(problem, file=sys.stderr, flush=True)
        return 2
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Serve's proxy hangs on a WebSocket request line over 8 KiB instead of refusing it; a larger
    # limit lets the stream refuse long ids cleanly (4404).
    os.environ.setdefault("WEBSOCKETS_MAX_LINE_LENGTH", "65536")
    settings = get_settings()
    from runtime.haproxy import haproxy_environment, stop_haproxy

    haproxy_dir = haproxy_environment(settings) if settings.ingress_mode == "haproxy" else None
    # Ray's own metrics cost the dashboard agent a share of a core under load: off unless asked for
    if not settings.ray_address:
        os.environ.setdefault("RAY_enable_metrics_collection", "1" if settings.ray_metrics else "0")
    setup_logging(settings.log_level)
    import ray
    from ray import serve

    import serve_app
    from actors.bootstrap import NAMESPACE, start_actors, stop_actors, supervise
    from engine.adapters.postgres import prepare_database
    from runtime.embedded import resolve_dependencies
    from runtime.group_signal import GroupSignalCanary
    from runtime.ray_local import init_ray, kill_local_ray, ray_answers

    stop = threading.Event()
    received: list[int] = []

    def _on_signal(signum: int, _frame: Any) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        received.append(signum)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    canary = GroupSignalCanary()
    deps = resolve_dependencies(settings)
    settings = settings.with_store_urls(deps.redis_url, deps.database_url)
    actors = None
    node_id: str | None = None
    ray_gone = False
    try:
        asyncio.run(prepare_database(deps.database_url))
        pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        init_ray(
            address=settings.ray_address,
            num_cpus=None if settings.ray_address else (settings.ray_num_cpus or os.cpu_count()),
            include_dashboard=False,
            _temp_dir=str(settings.ray_temp_dir) if settings.ray_temp_dir and not settings.ray_address else None,
            namespace=NAMESPACE,
            runtime_env={
                "env_vars": {
                    "PYTHONPATH": pythonpath,
                    "RAY_AUTH_MODE": "disabled",
                    "WEBSOCKETS_MAX_LINE_LENGTH": os.environ["WEBSOCKETS_MAX_LINE_LENGTH"],
                }
            },
            logging_level=logging.WARNING,
        )
        alive = [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
        if settings.ray_address and len(alive) > 1 and _local_only(deps.redis_url, deps.database_url, bool(deps.embedded)):
            raise SystemExit(
                "this Ray cluster has several nodes, but Redis/PostgreSQL are embedded or on 127.0.0.1: actors on other "
                "nodes could not reach them. Set OEE_REDIS_URL and OEE_DATABASE_URL to addresses every node can reach."
            )
        # Ray's core worker installs its own SIGTERM handler (which aborts): take the signals back.
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        if stop.is_set():
            return 0
        node_id = ray.get_runtime_context().get_node_id()
        actors = start_actors(settings)
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(serve_app.build_app(settings, actors.hub, actors.venues, actors.metrics), name="oee", route_prefix="/", blocking=False)
        url = f"http://{settings.host}:{settings.port}"
        if settings.admin_key is None:
            log.warning(OPEN_MODE_WARNING.format(url=url))
            print(f"WARNING: {OPEN_MODE_WARNING.format(url=url)}", file=sys.stderr, flush=True)
        log.info("engine ready", extra={"url": url, "embedded": deps.embedded, "protected": settings.admin_key is not None})
        print(f"engine ready on http://{settings.host}:{settings.port}", flush=True)
        while not stop.wait(2.0):
            supervise(actors)
    finally:
        # Signalled with its whole process group, the Ray this process started is already gone: Serve's
        # shutdown would wait for a dead controller and stopping the actors for nothing.
        group_signalled = canary.group_signalled(wait_s=0.5 if signal.SIGTERM in received else 0.0)
        ray_gone = node_id is not None and not settings.ray_address and (group_signalled or not ray_answers())
        if node_id is not None and not ray_gone:
            _stop_deadline(settings.ingress_drain_s + STOP_MARGIN_S, node_id, settings.ingress_mode == "haproxy", deps.stop)
        if ray_gone:
            log.warning("Ray's daemons exited with the engine's process group; skipping Serve's and the actors' shutdown")
        else:
            with contextlib.suppress(Exception):
                serve.shutdown()  # type: ignore[no-untyped-call]
        # HAProxy next, before any other Ray call: with Ray's daemons gone the next call into Ray can
        # end this process, which would leave HAProxy listening on OEE_PORT.
        if settings.ingress_mode == "haproxy" and node_id and not settings.ray_address:
            stop_haproxy(node_id)
        if haproxy_dir is not None:
            shutil.rmtree(haproxy_dir, ignore_errors=True)
        if ray_gone:
            kill_local_ray()
        else:
            if actors is not None:
                stop_actors(actors)
            with contextlib.suppress(Exception):
                ray.shutdown()
        deps.stop()
        canary.close()
        log.info("engine stopped")
    if ray_gone:
        # Everything is stopped; Ray's exit hooks would only wait for a cluster that is gone.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _stop_deadline(budget_s: float, node_id: str, haproxy: bool, stop_stores: Callable[[], None]) -> None:
    """If the orderly stop has not ended within ``budget_s`` (a Ray call waiting on a daemon that is
    going away), stop what would outlive the engine and exit: a stop must never hang."""

    def _expire() -> None:
        log.warning("the orderly stop ran out of time; killing Ray and exiting", extra={"budget_s": budget_s})
        from runtime.haproxy import stop_haproxy
        from runtime.ray_local import kill_local_ray

        with contextlib.suppress(Exception):
            if haproxy:
                stop_haproxy(node_id)
            kill_local_ray()
            stop_stores()
        logging.shutdown()
        os._exit(0)

    timer = threading.Timer(budget_s, _expire)
    timer.daemon = True
    timer.start()


def _local_only(redis_url: str, database_url: str, embedded: bool) -> bool:
    """True if a store is embedded or on the loopback (unreachable from another node)."""
    return embedded or any(h in u for u in (redis_url, database_url) for h in ("127.0.0.1", "localhost", "[::1]", "host=/"))
