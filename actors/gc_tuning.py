"""Garbage-collector settings for the engine's long-lived processes (the Serve replica, every actor,
and the benchmark's own WebSocket client).

Two costs, both measured here. A full collection scans every tracked object: a Ray actor holds some
85,000 after start-up (Ray's and the engine's modules), so each full collection paused its event loop
~31 ms (fast machine; more on a slow one), and with CPython's default thresholds (700, 10, 10) one came
every few seconds under load. Orders whose quote answers waited behind such a pause showed a routing
stage 67-70 ms over the quote (three orders at once, one benchmark run). A Serve replica holding 2,000
WebSockets tracks some 600,000 objects more; its full collections paused it 47-175 ms while the
sockets connected (fan-out p99 80-100 ms at 2,000 subscribers; measured with ``gc.callbacks``).

So: what exists once the process has started is frozen (``gc.freeze``: kept out of every later
collection; it lives as long as the process anyway), full collections are made rare and the others
small: a middle collection scans at most five young generations' survivors, and a full one waits for
a thousand middle ones. Fan-out p99 at 2,000 subscribers: 39-44 ms with (2,000, 5, 1,000); with
(10,000, 10, 1,000) 29-66 ms (middle collections of up to 47 ms). Every generation is still
collected, so reference cycles made after start-up are still freed, later.
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
