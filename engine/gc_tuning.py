"""Garbage-collector settings for the engine's long-lived processes (the Serve replica, every actor,
the benchmark's WebSocket client).

What exists once a process has started is frozen out of every later collection (it lives as long as
the process), full collections are made rare and the others small: an actor tracks tens of thousands
of objects after start-up, and a full collection over them paused its event loop long enough to show
in order latency. Reference cycles made later are still freed. Why and what it measured:
docs/decisions/003-gc-freeze.md.
"""

from __future__ import annotations

import gc

THRESHOLDS = (2_000, 5, 1_000)

_tuned = False


def tune_garbage_collection() -> None:
    """Freeze what exists now and set :data:`THRESHOLDS`, once per process (call it once started up)."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
