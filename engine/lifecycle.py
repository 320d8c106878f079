"""The order lifecycle as one transition table, and every status set the engine shares.

``routing`` may be re-entered from any working state: that is a retry after a
transient fault (the event carries the new attempt number). ``routing -> waiting``
re-arms a LIMIT order whose price slipped away between trigger and quote.
Cancellation is possible until the order is submitted, never after.

Each set is defined here once and exported as SQL too (``*_SQL``), so the stores,
the hub, the edge and the load tools agree on what "terminal" or "waiting" means.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from engine.errors import InvalidTransition
from engine.models import Order, OrderStatus

S = OrderStatus

TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING: frozenset({S.WAITING, S.ROUTING, S.FAILED, S.CANCELLED, S.EXPIRED}),
    S.WAITING: frozenset({S.ROUTING, S.FAILED, S.CANCELLED, S.EXPIRED}),
    S.ROUTING: frozenset({S.ROUTING, S.WAITING, S.BUILDING, S.FAILED, S.CANCELLED}),
    S.BUILDING: frozenset({S.ROUTING, S.SUBMITTED, S.FAILED, S.CANCELLED}),
    S.SUBMITTED: frozenset({S.ROUTING, S.CONFIRMED, S.FAILED}),
    S.CONFIRMED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
}

TERMINAL: frozenset[OrderStatus] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
"""No transition leads out. Members are ``str`` enums: ``"confirmed" in TERMINAL`` holds."""

CANCELLABLE: frozenset[OrderStatus] = frozenset({S.PENDING, S.WAITING, S.ROUTING, S.BUILDING})
"""A cancel may still win: the order has not been claimed for submission to a venue."""

NOT_STARTED: frozenset[OrderStatus] = frozenset({S.PENDING, S.WAITING})
"""No attempt has begun: a waiting order may still expire, and a run starts from routing."""

REPEATS_DECISION: frozenset[OrderStatus] = frozenset({S.SUBMITTED, S.CONFIRMED})
"""Their events carry the order's routing decision for the stream (the seed's clients read it there)
without changing it: only ``building`` (and a failure after a re-quote) sets a decision."""


def sql_set(statuses: Iterable[OrderStatus]) -> str:
    """A status set as an SQL list literal, e.g. ``('cancelled', 'confirmed')``."""
    return "(" + ", ".join(f"'{status.value}'" for status in sorted(statuses)) + ")"


TERMINAL_SQL = sql_set(TERMINAL)
CANCELLABLE_SQL = sql_set(CANCELLABLE)

HELD_BY_WATCHER_SQL = "(status = 'waiting' AND triggered_at IS NULL AND NOT cancel_requested)"
"""SQL twin of :func:`held_by_watcher` over the ``orders`` table's columns."""


def held_by_watcher(order: Order) -> bool:
    """A waiting order whose condition has not fired: it lives in the PriceWatcher, not in the queue."""
    return order.status is S.WAITING and order.triggered_at is None and not order.cancel_requested


def is_terminal(status: OrderStatus) -> bool:
    return status in TERMINAL


def check_transition(current: OrderStatus, target: OrderStatus) -> OrderStatus:
    """Return ``target`` if ``current -> target`` is legal, else raise :class:`InvalidTransition`."""
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(current.value, target.value)
    return target
