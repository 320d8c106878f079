"""Running the engine in the foreground: ``python -m runtime`` (what ``bash scripts/run`` does).

Resolves Redis and PostgreSQL (embedded ones when none is configured or listening) and prepares the
database while Ray starts (with Serve's HAProxy ingress), starts the engine's actors, then Serve and
the application, supervises the actors, and on SIGINT/SIGTERM stops it all: Serve with the actors
during its drain, HAProxy, the embedded servers, Ray. Why this order: docs/decisions/014-lean-local-ray.md.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import ValidationError

from engine.logs import setup_logging
from engine.settings import Settings, get_settings

if TYPE_CHECKING:
    from actors.bootstrap import EngineActors
    from runtime.embedded import Dependencies

log = logging.getLogger("runtime.launcher")

ROOT = Path(__file__).resolve().parents[1]
APP_NAME = "oee"
RUNNING_POLL_S = 0.1
"""How often the start asks Serve whether the application runs (``serve.run`` asks once a second)."""
STOP_MARGIN_S = 20.0
"""How long the orderly stop may take beyond the ingress drain before it is cut short."""


OPEN_MODE_WARNING = (
    "OPEN LOCAL MODE: OEE_ADMIN_KEY is not set, so this engine asks no one for a key. Every order belongs to the "
    "account 'local' and anyone who reaches {url} may trade, cancel and halt. Set OEE_ADMIN_KEY before exposing it."
)


def main() -> int:
    """Run the engine until SIGINT or SIGTERM."""
    from runtime.phases import PhaseClock

    clock = PhaseClock()
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
    if not settings.ray_address:
        from runtime.ray_local import lean_local_ray

        lean_local_ray(metrics=settings.ray_metrics)
    setup_logging(settings.log_level)
    clock.mark("interpreter")
    import ray
    from ray import serve

    import serve_app
    from actors.bootstrap import NAMESPACE, start_actors, supervise
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

    clock.mark("imports")
    canary = GroupSignalCanary()
    # The stores (embedded ones start in seconds) and the database's migrations get ready beside Ray.
    stores_ready = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oee-stores").submit(_prepare_stores, settings)
    deps: Dependencies | None = None
    actors: EngineActors | None = None
    node_id: str | None = None
    ray_gone = False
    try:
        pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        try:
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
        finally:
            deps = stores_ready.result()  # its servers are stopped below even if Ray did not start
        clock.mark("ray")
        settings = settings.with_store_urls(deps.redis_url, deps.database_url)
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
        # The actors first, then Serve: on two busy cores, Serve's controller, proxies and replica started
        # beside eight actor processes made /health later, not sooner (docs/benchmarks.md).
        actors = start_actors(settings)
        clock.mark("actors")
        serve.start(http_options={"host": settings.host, "port": settings.port})
        clock.mark("serve")
        app = serve_app.build_app(settings, actors.hub, actors.venues, actors.metrics)
        serve.run_many([serve.RunTarget(app, name=APP_NAME, route_prefix="/")], wait_for_applications_running=False)
        _wait_running(APP_NAME, stop)
        clock.mark("app")
        url = f"http://{settings.host}:{settings.port}"
        if settings.admin_key is None:
            log.warning(OPEN_MODE_WARNING.format(url=url))
            print(f"WARNING: {OPEN_MODE_WARNING.format(url=url)}", file=sys.stderr, flush=True)
        clock.report()
        log.info("engine ready", extra={"url": url, "embedded": deps.embedded, "protected": settings.admin_key is not None})
        print(f"engine ready on http://{settings.host}:{settings.port}", flush=True)
        while not stop.wait(2.0):
            supervise(actors)
    finally:
        failed = sys.exc_info()[1] is not None  # a start that failed: it propagates (a non-zero exit) once stopped
        # Signalled with its whole process group, the Ray this process started is already gone: Serve's
        # shutdown would wait for a dead controller and stopping the actors for nothing.
        group_signalled = canary.group_signalled(wait_s=0.5 if signal.SIGTERM in received else 0.0)
        ray_gone = node_id is not None and not settings.ray_address and (group_signalled or not ray_answers())
        haproxy = settings.ingress_mode == "haproxy" and node_id is not None and not settings.ray_address
        stop_stores = deps.stop if deps is not None else _nothing
        stopwatch = PhaseClock(from_now=True)
        if ray_gone:
            log.warning("Ray's daemons exited with the engine's process group; skipping Serve's and the actors' shutdown")
            _stop_hard(node_id, haproxy, haproxy_dir, stop_stores, canary)
        if node_id is not None:
            _stop_deadline(settings.ingress_drain_s + STOP_MARGIN_S, node_id, haproxy, haproxy_dir, stop_stores, canary)
            # The actors stop while Serve drains the ingress: an order accepted meanwhile is already in
            # PostgreSQL and queued in Redis, and the next start recovers it.
            stopping = _in_thread(_stop_actors, actors, name="oee-stop-actors")
            with contextlib.suppress(Exception):
                serve.shutdown()  # type: ignore[no-untyped-call]
            stopwatch.mark("serve")
            stopping.join()
            stopwatch.mark("actors")
        # HAProxy next, before any other Ray call: with Ray's daemons gone the next call into Ray can
        # end this process, which would leave HAProxy listening on OEE_PORT.
        if haproxy and node_id is not None:
            stop_haproxy(node_id)
        if haproxy_dir is not None:
            shutil.rmtree(haproxy_dir, ignore_errors=True)
        stopwatch.mark("haproxy")
        stop_stores()
        canary.close()
        stopwatch.mark("stores")
        if node_id is not None and not settings.ray_address and not failed:
            # Serve and the actors are down and the stores flushed: the local Ray holds nothing left to
            # save, and killing it takes a tenth of ray.shutdown's orderly second.
            kill_local_ray()
        else:
            with contextlib.suppress(Exception):
                ray.shutdown()
        stopwatch.mark("ray")
        log.info("engine stopped", extra={"phases_s": stopwatch.phases, "total_s": stopwatch.total_s()})
        if node_id is not None and not failed:
            # Everything is stopped and flushed; the interpreter's exit hooks (Ray's among them) would only wait.
            _exit_now()
    return 0


def _wait_running(name: str, stop: threading.Event) -> None:
    """Block until Serve reports the application RUNNING (or a stop is asked for); raise if it failed."""
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    while not stop.is_set():
        app = serve.status().applications.get(name)
        if app is not None and app.status == ApplicationStatus.RUNNING:
            return
        if app is not None and app.status == ApplicationStatus.DEPLOY_FAILED:
            raise RuntimeError(f"deploying the application failed: {app.message}")
        stop.wait(RUNNING_POLL_S)


def _prepare_stores(settings: Settings) -> Dependencies:
    """Resolve (or start) Redis and PostgreSQL and migrate the database."""
    from engine.adapters.postgres import prepare_database
    from runtime.embedded import resolve_dependencies

    deps = resolve_dependencies(settings)
    try:
        asyncio.run(prepare_database(deps.database_url))
    except BaseException:
        deps.stop()
        raise
    return deps


def _stop_actors(actors: EngineActors | None) -> None:
    from actors.bootstrap import stop_actors

    if actors is not None:
        stop_actors(actors)


def _in_thread(target: Callable[..., None], *args: Any, name: str) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread


def _nothing() -> None:
    return None


def _exit_now() -> NoReturn:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _stop_hard(node_id: str | None, haproxy: bool, haproxy_dir: str | None, stop_stores: Callable[[], None], canary: Any) -> NoReturn:
    """Stop what would outlive the engine without asking Ray (its daemons are gone or hanging) and exit:
    HAProxy, what is left of the local Ray, the embedded stores."""
    from runtime.haproxy import stop_haproxy
    from runtime.ray_local import kill_local_ray

    for step in (
        (lambda: stop_haproxy(node_id)) if haproxy and node_id is not None else _nothing,
        (lambda: shutil.rmtree(haproxy_dir, ignore_errors=True)) if haproxy_dir is not None else _nothing,
        kill_local_ray,
        stop_stores,
        canary.close,
    ):
        with contextlib.suppress(Exception):
            step()
    log.info("engine stopped")
    _exit_now()


def _stop_deadline(
    budget_s: float, node_id: str, haproxy: bool, haproxy_dir: str | None, stop_stores: Callable[[], None], canary: Any
) -> None:
    """If the orderly stop has not ended within ``budget_s`` (a Ray call waiting on a daemon that is
    going away), stop the hard way: a stop must never hang."""

    def _expire() -> None:
        log.warning("the orderly stop ran out of time; killing Ray and exiting", extra={"budget_s": budget_s})
        _stop_hard(node_id, haproxy, haproxy_dir, stop_stores, canary)

    timer = threading.Timer(budget_s, _expire)
    timer.daemon = True
    timer.start()


def _local_only(redis_url: str, database_url: str, embedded: bool) -> bool:
    """True if a store is embedded or on the loopback (unreachable from another node)."""
    return embedded or any(h in u for u in (redis_url, database_url) for h in ("127.0.0.1", "localhost", "[::1]", "host=/"))
