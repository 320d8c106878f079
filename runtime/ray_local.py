"""The local Ray this process starts: its lean environment, starting it, is it still answering, and
killing what is left of it."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

log = logging.getLogger("runtime.ray_local")

START_ATTEMPTS = 3


def lean_local_ray(*, metrics: bool) -> None:
    """Switch off what a local Ray would start that the engine does not use (unless already set in the
    environment, which the raylet passes on to every worker). Why each: docs/decisions/014-lean-local-ray.md.
    """
    # no idle workers started ahead of demand: every process the engine needs is an actor's
    os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
    os.environ.setdefault("RAY_enable_worker_prestart", "0")
    # Ray's own metrics cost the dashboard agent a share of a core under load: off unless asked for
    os.environ.setdefault("RAY_enable_metrics_collection", "1" if metrics else "0")


def init_ray(**options: Any) -> None:
    """``ray.init(**options)``, tried again if the local node does not register in time.

    Ray waits a fixed 30 s for a new raylet to register with its GCS; on a machine loaded by other
    jobs that wait has run out. A failed start leaves nothing to keep: it is shut down and tried again.
    """
    import ray

    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            ray.init(**options)
            return
        except Exception as exc:
            if "timed out during startup" not in str(exc) or attempt == START_ATTEMPTS:
                raise
            log.warning("ray did not start in time; trying again", extra={"attempt": attempt})
            with contextlib.suppress(Exception):
                ray.shutdown()


def ray_answers(timeout_s: float = 2.0) -> bool:
    """True if the cluster's GCS answers. Signalled with the engine's whole process group, the GCS
    this process started stops at once while its process lingers, so only asking tells."""
    from ray._private import worker  # the GCS client Serve's controller uses; no public call has a timeout

    connected: Any = worker.global_worker  # its gcs_client is set on ray.init (untyped)
    try:
        connected.gcs_client.get_all_node_info(timeout=timeout_s)
    except Exception:
        return False
    return True


def kill_local_ray() -> None:
    """SIGKILL the Ray this process started: its daemons, agents and workers (which would exit with their
    raylet, but only once they notice)."""
    import psutil
    import ray

    ray_dir = os.path.dirname(ray.__file__) + os.sep
    doomed = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            cmdline = child.cmdline()
            # workers and agents rename themselves ray::<what>; the other daemons run Ray's own scripts
            renamed = bool(cmdline) and cmdline[0].startswith("ray::")
            if child.name() in ("gcs_server", "raylet") or renamed or any(ray_dir in arg for arg in cmdline):
                child.kill()
                doomed.append(child)
    psutil.wait_procs(doomed, timeout=5)
