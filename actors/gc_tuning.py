"""Garbage-collector thresholds for processes that hold many long-lived objects (the Serve replica,
and the benchmark's own WebSocket client).

A Serve replica holding 2,000 WebSockets tracks some 600,000 objects more than an idle one. With
CPython's default thresholds (700, 10, 10) its full collections, which scan every tracked object,
paused the event loop for 47-175 ms several times while the sockets connected, and live events
waited behind them (fan-out p99 80-100 ms at 2,000 subscribers with the machine 35 % busy; measured
with ``gc.callbacks`` in the replica). The fix is to make full collections rare and keep the others
small: a middle collection scans at most five young generations' survivors, and a full one waits
for a thousand middle ones. Fan-out p99 at 2,000 subscribers: 39-44 ms with (2,000, 5, 1,000); with
(10,000, 10, 1,000) 29-66 ms (middle collections of up to 47 ms). Every generation is still
collected, so reference cycles are still freed, later.
"""

from __future__ import annotations

import gc

THRESHOLDS = (2_000, 5, 1_000)


def spread_garbage_collection() -> None:
    """Set :data:`THRESHOLDS` for this process (call once it has started up)."""
    gc.set_threshold(*THRESHOLDS)
