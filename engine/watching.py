"""When a waiting order should fire: pure decisions over pool snapshots.

The PriceWatcher reads each venue's pool once per pair per tick and evaluates
every waiting order of that pair locally with the pool math, so a thousand
waiting orders cost the venues what one does. Venues that push pool changes get the same
decision at once, over the pushed state (:func:`fresh_views`); what fired an order goes with
it (:class:`Trigger`) so it need not quote again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Seen:
    """A venue's pool state for a pair and when the venue was in it (epoch ms): pushed or read."""

    view: PoolView
    at_ms: float


@dataclass(frozen=True, slots=True)
class Trigger:
    """What fired a waiting order: each venue's pool state the watcher decided on. The order may
    swap on it instead of quoting again while it is fresh (settlement still re-prices at the venue)."""

    order_id: str
    seen: Mapping[VenueName, Seen]
    fired_at_ms: float

    def fresh(self, now_ms: float, max_age_ms: float) -> dict[VenueName, Seen]:
        """The pool states no older than ``max_age_ms`` at ``now_ms`` (none is trusted past it)."""
        return {venue: s for venue, s in self.seen.items() if now_ms - s.at_ms <= max_age_ms}


def fresh_views(
    venues: Iterable[VenueName], seen: Mapping[VenueName, Seen], now_ms: float, max_age_ms: float
) -> dict[VenueName, PoolView | None]:
    """Each venue's last seen pool state if fresh enough, else None. For a decision on a push: a venue
    not seen lately counts as having no pool, which can only delay a trigger, never cause one."""
    out: dict[VenueName, PoolView | None] = {}
    for venue in venues:
        s = seen.get(venue)
        out[venue] = s.view if s is not None and now_ms - s.at_ms <= max_age_ms else None
    return out
