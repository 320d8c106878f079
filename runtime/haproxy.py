"""Serve's HAProxy ingress for a Ray this process starts: its environment, with files and ports of
this engine's own, and stopping its binary (which outlives ``ray.shutdown``).

Why HAProxy, throughput-optimized mode and these settings: docs/decisions/001-haproxy-ingress.md.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from engine.settings import Settings
from runtime.embedded import free_port


def haproxy_environment(settings: Settings) -> str:
    """Turn on Serve's HAProxy ingress for the Ray this process starts (its raylet passes the
    environment on to the Serve controller); returns the directory to remove at exit.

    Serve's defaults put HAProxy's config and sockets in one fixed ``/tmp/haproxy-serve`` and its
    listeners on fixed ports, so two engines on one machine would share them: every file and port
    here is this engine's own.
    """
    os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
    # handlers on the replica's own event loop, buffered request logs, GC frozen after start-up
    os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
    # that mode sends the replicas' stderr to Serve's own files: keep the ingress's JSON lines on stderr,
    # where Ray forwards them to the launcher's output like every other engine process's
    os.environ.setdefault("RAY_SERVE_LOG_TO_STDERR", "1")
    # Serve adds a 56-character node id below this directory and a unix socket's path must stay
    # under 107 bytes: a short directory in /tmp (left behind only by a kill -9).
    chosen = settings.haproxy_dir
    if chosen is not None:
        chosen.mkdir(parents=True, exist_ok=True)
        directory = str(chosen)
    else:
        directory = tempfile.mkdtemp(prefix="oee-haproxy-", dir="/tmp")
    os.environ.setdefault("RAY_SERVE_HAPROXY_CONFIG_FILE_LOC", f"{directory}/haproxy.cfg")
    os.environ.setdefault("RAY_SERVE_HAPROXY_SOCKET_PATH", f"{directory}/admin.sock")
    os.environ.setdefault("RAY_SERVE_HAPROXY_SERVER_STATE_BASE", directory)
    os.environ.setdefault("RAY_SERVE_HAPROXY_SERVER_STATE_FILE", f"{directory}/server-state")
    os.environ.setdefault("RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH", f"{directory}/metrics.sock")
    os.environ.setdefault("RAY_SERVE_HAPROXY_METRICS_PORT", str(free_port()))
    os.environ.setdefault("RAY_SERVE_HAPROXY_STATS_PORT", str(free_port()))
    # the fallback proxy actor behind HAProxy: a fixed port would send one engine's requests to another's
    os.environ.setdefault("RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", str(free_port()))
    os.environ.setdefault("RAY_SERVE_FALLBACK_PROXY_GRPC_PORT", str(free_port()))
    # per-request metrics: a syslog line per request parsed by Serve's manager actor; off unless asked for
    os.environ.setdefault("RAY_SERVE_HAPROXY_METRICS_ENABLED", "1" if settings.request_metrics else "0")
    # how long a stopping replica keeps accepting: HAProxy is reconfigured by Serve and retries elsewhere
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", str(settings.ingress_drain_s))
    return directory


def stop_haproxy(node_id: str) -> None:
    """Stop the HAProxy that this engine's Ray node started (found by the node id in its command line)."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if "haproxy" in cmdline and node_id in cmdline:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
                proc.wait(5)
