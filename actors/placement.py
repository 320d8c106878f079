"""Where the engine's actors run on a Ray cluster: scheduling options for ``actors.bootstrap``.

Two kinds of actors, two rules.

**Pools** (the ``OrderExecutor`` pool and the two quoters) use Ray's ``"SPREAD"`` scheduling
strategy. Every engine actor asks for ``num_cpus=0``, and Ray's default (hybrid) policy then keeps
them on the node that created them (the head, where the driver runs) because that node never looks
busy; nothing would ever run on the workers. SPREAD places consecutive actors on different nodes
(best effort, round robin over the nodes that fit), so:

* the orders' work (asyncio, serialisation, PostgreSQL and Redis round trips) is shared by the
  nodes, and the dispatcher's least-loaded choice of executor spreads orders over them;
* losing a node loses only the orders in flight on that node's executors (the dispatcher queues
  them again; the workflow resumes from PostgreSQL and asks the venues for an existing swap);
* SPREAD pins nothing: an actor of a lost node (``max_restarts=-1``) restarts on a surviving node
  after the GCS health check notices the loss. A custom resource or a hard node affinity would
  instead leave it RESTARTING until a node with that resource came back.

Each pool actor also asks for a token amount of Ray's logical ``memory`` resource
(:data:`POOL_MEMORY_BYTES`, 1 MiB; nodes advertise gigabytes, nothing is reserved for real). An
actor that asks for no resource at all is not placed by the SPREAD policy: measured on a head + 2
workers, six such actors landed 5/1/0, 3/2/1, 2/1/3 across the nodes (soft node affinity did no
better), while with any non-zero request they landed 2/2/2 every time.

SPREAD is applied once, when an actor is placed: a node that joins later gets no existing actor
(start the engine after the workers joined, or restart it, to use a new node).

**Singletons** (``StatusHub``, ``RateLimiter``, ``Dispatcher``, ``PriceWatcher``) exist once per
cluster by design: one event log per order for every Serve replica on any node (the hub is a named
actor; any replica's handle reaches it across nodes), one token bucket so the admission limit holds
cluster-wide, one dispatcher so an order runs on one executor at a time, one watch list of waiting
LIMIT/SNIPER orders so each fires once. They are placed on the
head when the head advertises the custom resource :data:`HEAD_RESOURCE` (``ray start --head
--resources='{"oee_head": 1}'``, see cluster.yaml and deploy/), because the head is the one node
whose loss takes the whole cluster down anyway (the GCS runs there). A worker's loss then never
restarts a singleton. Failure modes when a singleton restarts anyway (the head came back with GCS
fault tolerance, or the actor crashed):

* StatusHub: its memory (live logs, subscribers) is lost; replicas see a new ``incarnation`` and
  subscribe again, and open streams fill any gap from PostgreSQL. No event is lost, some arrive late.
* RateLimiter: the bucket restarts full, so up to ``rate_limit_burst`` extra orders may start in
  that minute. The limit is otherwise exact because it is one bucket, wherever executors run.
* Dispatcher: Ray re-runs only its constructor; its loops run again once ``ensure_started`` is
  called (``serve_app._supervise`` does it), and ``start`` recovers every open order from
  PostgreSQL. Until then nothing is dispatched; nothing accepted is lost.
* PriceWatcher: the same: ``ensure_started`` (also called by ``_supervise``) reloads its watch
  list from PostgreSQL; waiting orders fire late by the restart time, none is lost.

Without :data:`HEAD_RESOURCE` in the cluster (one machine, tests) singletons get no constraint.
"""

from __future__ import annotations

from typing import Any

import ray

HEAD_RESOURCE = "oee_head"
"""Custom resource the head node advertises (amount 1); singletons each ask for a sliver of it."""

POOL_MEMORY_BYTES = 1024 * 1024
"""Logical memory each pool actor asks for, so that the SPREAD policy places it (see above)."""

_SLIVER = 0.01


def pool_options() -> dict[str, Any]:
    """Options for interchangeable actors: executors and quoters."""
    return {"scheduling_strategy": "SPREAD", "memory": POOL_MEMORY_BYTES}


def singleton_options(cluster_resources: dict[str, float] | None = None) -> dict[str, Any]:
    """Options for the cluster-wide singletons: on the head if it advertises :data:`HEAD_RESOURCE`."""
    resources: dict[str, float] = ray.cluster_resources() if cluster_resources is None else cluster_resources  # type: ignore[no-untyped-call]
    if resources.get(HEAD_RESOURCE, 0.0) > 0:
        return {"resources": {HEAD_RESOURCE: _SLIVER}}
    return {}
