"""A multi-node Ray cluster on this one machine (``ray.cluster_utils.Cluster``), shared by the
cluster tests and ``loadtest/scale_bench.py``.

Every node is a separate raylet with its own worker processes; they share this machine's CPUs.
The cluster keeps everything under a private temp dir: ``RAY_TMPDIR`` is pointed there while it
runs, because ``cluster_utils`` otherwise writes ``/tmp/ray/ray_current_cluster``, which other
people's Ray sessions on this machine read. Nothing here touches a Ray process it did not start:
:func:`stop_cluster` checks that exactly the processes this cluster started are gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import ray
from ray.cluster_utils import Cluster

from actors.placement import HEAD_RESOURCE

ROOT = Path(__file__).resolve().parents[2]

# Notice a lost node in ~2 s instead of ~14 s (RAY_NOTES.md, Faults).
FAST_HEALTH_CHECKS: dict[str, Any] = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}


def node_resource(index: int) -> str:
    """The custom resource only node ``index`` has (0 is the head): to pin a test probe there."""
    return f"oee_test_node_{index}"


@dataclass
class ClusterRun:
    cluster: Cluster
    temp_dir: str
    node_ids: list[str]  # index 0 is the head
    namespace: str
    _previous_tmpdir: str | None = None
    _pids: set[int] = field(default_factory=set)

    @property
    def head_id(self) -> str:
        return self.node_ids[0]

    def label(self, node_id: str) -> str:
        return "head" if node_id == self.head_id else f"worker{self.node_ids.index(node_id)}" if node_id in self.node_ids else node_id[:8]

    def node(self, node_id: str) -> Any:
        """The ``ray._private.node.Node`` of a node id."""
        for node in self.cluster.list_all_nodes():  # type: ignore[no-untyped-call]
            if node.node_id == node_id:
                return node
        raise KeyError(node_id)


def _node_processes(cluster: Cluster) -> set[int]:
    pids: set[int] = set()
    for node in cluster.list_all_nodes():  # type: ignore[no-untyped-call]
        for infos in node.all_processes.values():
            for info in infos:
                if info.process is not None:
                    pids.add(info.process.pid)
    return pids


def start_cluster(
    workers: int,
    *,
    num_cpus: int = 1,
    system_config: dict[str, Any] | None = None,
    namespace: str = "oee-cluster-test",
    attempts: int = 2,
) -> ClusterRun:
    """A head and ``workers`` worker nodes, and this process connected to it as the driver.

    Tried twice: a raylet has a fixed 30 s to register with the GCS, which a busy machine (load
    average above 15 on 2 CPUs, seen here) sometimes misses. A node that fails to start that way
    is not known to the Cluster object; Ray's exit hook stops its processes when this process ends.
    """
    for attempt in range(1, attempts + 1):
        try:
            return _start_cluster(workers, num_cpus=num_cpus, system_config=system_config, namespace=namespace)
        except Exception as exc:
            if attempt == attempts or "timed out during startup" not in str(exc):
                raise
            print(f"cluster start failed ({exc}); trying again", flush=True)
    raise AssertionError("unreachable")


def _start_cluster(workers: int, *, num_cpus: int, system_config: dict[str, Any] | None, namespace: str) -> ClusterRun:
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    temp_dir = tempfile.mkdtemp(prefix="oee-cl-", dir="/tmp")  # short: socket paths are limited to 107 bytes
    os.makedirs(os.path.join(temp_dir, "ray"))  # where cluster_utils writes ray_current_cluster under RAY_TMPDIR
    previous = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = temp_dir
    common: dict[str, Any] = {"num_cpus": num_cpus, "include_dashboard": False, "dashboard_agent_listen_port": None}
    cluster: Cluster | None = None
    try:
        cluster = Cluster()
        head = cluster.add_node(
            **common,
            temp_dir=temp_dir,
            resources={HEAD_RESOURCE: 1, node_resource(0): 1},
            _system_config=system_config or {},
        )
        node_ids = [head.node_id]  # in the order of node_resource(i); cluster.worker_nodes is a set
        for i in range(1, workers + 1):
            node_ids.append(cluster.add_node(**common, resources={node_resource(i): 1}).node_id)
        cluster.wait_for_nodes()
        ray.init(
            address=cluster.address,
            namespace=namespace,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}},
        )
        run = ClusterRun(cluster, temp_dir, node_ids, namespace, previous)
        run._pids = _node_processes(cluster)
        return run
    except BaseException:
        with contextlib.suppress(Exception):
            ray.shutdown()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.shutdown()  # type: ignore[no-untyped-call]
        _restore_tmpdir(previous)
        raise


def _restore_tmpdir(previous: str | None) -> None:
    if previous is None:
        os.environ.pop("RAY_TMPDIR", None)
    else:
        os.environ["RAY_TMPDIR"] = previous


def stop_cluster(run: ClusterRun, worker_pids: set[int] | None = None) -> list[str]:
    """Disconnect, stop every node; return the processes of this cluster still alive (should be none).

    ``worker_pids`` are worker processes (actors) to check as well: they leave on their own
    once their raylet is gone, so they get a few seconds.
    """
    with contextlib.suppress(Exception):
        ray.shutdown()
    try:
        run._pids |= _node_processes(run.cluster)  # nodes added later, if any
        run.cluster.shutdown()  # type: ignore[no-untyped-call]
    finally:
        _restore_tmpdir(run._previous_tmpdir)
    deadline = time.monotonic() + 10
    watched = run._pids | (worker_pids or set())
    while True:
        alive = []
        for pid in sorted(watched):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{pid} {proc.name()}")
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if not alive and not os.environ.get("OEE_KEEP_RAY_LOGS"):  # set it to keep the session logs for a post-mortem
        shutil.rmtree(run.temp_dir, ignore_errors=True)
    return alive


def _node_of(_actor: Any) -> str:
    return str(ray.get_runtime_context().get_node_id())


def _pid_of(_actor: Any) -> int:
    return os.getpid()


def actor_nodes(handles: list[Any], timeout_s: float = 60.0) -> list[str]:
    """The node id each actor runs on now."""
    return [str(n) for n in ray.get([h.__ray_call__.remote(_node_of) for h in handles], timeout=timeout_s)]


def actor_pids(handles: list[Any], timeout_s: float = 60.0) -> set[int]:
    return {int(p) for p in ray.get([h.__ray_call__.remote(_pid_of) for h in handles], timeout=timeout_s)}


def per_node(run: ClusterRun, node_ids: list[str]) -> dict[str, int]:
    """How many of something per node, labelled head/worker1/..., every node listed."""
    counts = Counter(run.label(n) for n in node_ids)
    return {run.label(n): counts.get(run.label(n), 0) for n in run.node_ids}
