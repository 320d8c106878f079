"""Wait until the Ray cluster has all its nodes, then exit 0 (1 on timeout).

cluster.yaml and cluster-aws.yaml run it on the head before ``serve deploy``: the engine's
executors and quoters are spread over the nodes that exist when they are placed
(actors/placement.py), so deploying before the workers joined would put them all on the head.

    python deploy/wait_for_nodes.py --config ~/ray_bootstrap_config.yaml   # 1 + every node type's min_workers
    python deploy/wait_for_nodes.py 3                                       # or a count
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any


def expected_nodes(config: dict[str, Any]) -> int:
    """The head plus the workers the launcher keeps up: 1 + the sum of min_workers over node types
    (for the local provider, Ray's prepared config sets min_workers to the number of worker_ips)."""
    head = config.get("head_node_type")
    types = config.get("available_node_types", {})
    workers = sum(int(t.get("min_workers", 0)) for name, t in types.items() if name != head)
    if head in types and int(types[head].get("min_workers", 0)) > 0:  # local provider: one type for all
        workers = int(types[head]["min_workers"])
    return 1 + workers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("nodes", type=int, nargs="?", help="how many alive nodes to wait for")
    parser.add_argument("--config", type=Path, help="a cluster-launcher config (the head's ~/ray_bootstrap_config.yaml)")
    parser.add_argument("--address", default="auto", help="Ray address (default: the cluster this node belongs to)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait (default 900)")
    args = parser.parse_args(argv)
    if (args.nodes is None) == (args.config is None):
        parser.error("give a node count or --config, not both")
    if args.config is not None:
        import yaml  # type: ignore[import-untyped]

        config = yaml.safe_load(args.config.expanduser().read_text())
        if "available_node_types" not in config:  # not prepared yet (a file as written by hand)
            from ray.autoscaler._private.util import prepare_config

            config = prepare_config(config)
        wanted = expected_nodes(config)
    else:
        wanted = args.nodes

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(address=args.address, log_to_driver=False, logging_level=logging.ERROR)
    deadline = time.monotonic() + args.timeout
    try:
        while True:
            nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
            alive = sum(1 for node in nodes if node["Alive"])
            if alive >= wanted:
                print(f"{alive} of {wanted} nodes alive", flush=True)
                return 0
            if time.monotonic() > deadline:
                print(f"timed out: {alive} of {wanted} nodes alive after {args.timeout:.0f}s", file=sys.stderr, flush=True)
                return 1
            time.sleep(2.0)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
