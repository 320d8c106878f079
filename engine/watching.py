"""When a waiting order should fire: pure decisions over pool snapshots.

The PriceWatcher reads each venue's pool once per pair per tick and evaluates
every waiting order of that pair locally with the pool math, so a thousand
waiting orders cost the venues what one does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum

from engine.models import VenueName
from engine.order_types import policy_of
from engine.ports import PoolView
from engine.watch import Watch


class Verdict(StrEnum):
    WAIT = "wait"
    TRIGGER = "trigger"
    EXPIRE = "expire"


def best_output(watch: Watch, views: Mapping[VenueName, PoolView | None]) -> float | None:
    """The best single-venue output for the order's amount, or None if no venue has a pool."""
    outputs: list[float] = []
    for view in views.values():
        if view is None:
            continue
        try:
            outputs.append(view.output(watch.token_in, watch.amount))
        except (ValueError, ArithmeticError):  # past the pool's depth
            outputs.append(-math.inf)
    return max(outputs) if outputs else None


def decide(watch: Watch, views: Mapping[VenueName, PoolView | None], now_ms: float) -> Verdict:
    """Expire past ``expiresAt``; wait while no venue can fill the amount; else ask the order's type."""
    if watch.expires_at is not None and now_ms >= watch.expires_at:
        return Verdict.EXPIRE
    out = best_output(watch, views)
    if out is None or out <= 0:
        return Verdict.WAIT  # no pool yet (a sniper keeps waiting), or the pool cannot fill it
    return Verdict.TRIGGER if policy_of(watch.order_type).fires(watch, out) else Verdict.WAIT
