"""Where the engine's actors run on a Ray cluster: scheduling options for :mod:`actors.bootstrap`.

**Pools** (executors and venue quoters) are spread over the nodes (``"SPREAD"``, with a token amount
of Ray's logical ``memory`` so the SPREAD policy places them): the orders' work is shared, and a lost
node loses only its own actors, which restart elsewhere. **Singletons** (StatusHub, RateLimiter,
Dispatcher, PriceWatcher: one per cluster by design) go on the head when it advertises
:data:`HEAD_RESOURCE`, the one node whose loss takes the cluster down anyway. Why, what each
singleton's restart costs, and what was measured: docs/decisions/004-actor-placement.md.
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
