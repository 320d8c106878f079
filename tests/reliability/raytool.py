"""A Ray driver in its own process, attached to a running engine's cluster, that kills and inspects actors.

Run as ``python -m tests.reliability.raytool <gcs-address>`` from the project root. It reads one JSON
command per line on stdin and answers one JSON line on stdout:

* ``{"op": "pid", "name": N}``   the pid of the actor's worker (waits until the actor is alive)
* ``{"op": "kill", "name": N}``  ``ray.kill(actor, no_restart=False)``: Ray restarts it (max_restarts=-1)
* ``{"op": "hub", "name": N}``   what a StatusHub holds: subscribed orders, subscriptions, logs, inboxes
* ``{"op": "attr", "name": N, "path": "a.b"}``  an attribute of the actor's instance (a number, or a container's length)

A separate process keeps Ray out of the pytest process (no driver state, threads or signal handlers there).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

import ray
import ray.exceptions

NAMESPACE = "oee"


def _actor_pid(actor: Any, timeout_s: float = 60.0) -> int:
    """Waits for an actor that is restarting (calls to it fail at once with ActorUnavailableError meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return int(ray.get(actor.__ray_call__.remote(lambda _self: os.getpid()), timeout=timeout_s))
        except ray.exceptions.ActorUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _hub_state(actor: Any) -> dict[str, int]:
    def peek(hub: Any) -> dict[str, int]:
        subscribers = getattr(hub, "_subscribers", {})
        return {
            "subscribed_orders": len(subscribers),
            "subscriptions": sum(len(s) for s in subscribers.values()),
            "logs": len(getattr(hub, "_logs", {})),
            "inboxes": len(getattr(hub, "_inboxes", {})),
        }

    return dict(ray.get(actor.__ray_call__.remote(peek), timeout=60))


def _attr(actor: Any, path: str) -> Any:
    def peek(instance: Any) -> Any:
        value = instance
        for part in path.split("."):
            value = getattr(value, part, None)
        if value is None or isinstance(value, bool | int | float | str):
            return value
        return len(value)

    return ray.get(actor.__ray_call__.remote(peek), timeout=60)


def handle(command: dict[str, Any]) -> dict[str, Any]:
    actor = ray.get_actor(command["name"], namespace=NAMESPACE)
    op = command["op"]
    if op == "pid":
        return {"pid": _actor_pid(actor)}
    if op == "kill":
        ray.kill(actor, no_restart=False)
        return {}
    if op == "hub":
        return _hub_state(actor)
    if op == "attr":
        return {"value": _attr(actor, command["path"])}
    raise ValueError(f"unknown op {op!r}")


def main() -> int:
    ray.init(address=sys.argv[1], namespace=NAMESPACE, log_to_driver=False, logging_level=logging.ERROR)
    print(json.dumps({"ok": True, "ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = {"ok": True, **handle(json.loads(line))}
        except Exception as exc:  # every failure is answered, the driver stays up
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
