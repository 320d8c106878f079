"""What every phase uses: the progress log, a distribution summary, the terminal statuses as SQL takes them."""

from __future__ import annotations

import sys
import time
from typing import Any

from engine.lifecycle import TERMINAL as LIFECYCLE_TERMINAL
from loadtest.clients import percentile, rounded

TERMINAL = sorted(s.value for s in LIFECYCLE_TERMINAL)  # the engine's own definition, as a text[] parameter


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def dist(values: list[float], digits: int = 2) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": rounded(percentile(values, 50), digits),
        "p99": rounded(percentile(values, 99), digits),
        "max": rounded(max(values), digits) if values else None,
    }
