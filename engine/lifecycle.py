"""The order lifecycle as one transition table.

``routing`` may be re-entered from any working state: that is a retry after a
transient fault (the event carries the new attempt number). ``routing -> waiting``
re-arms a LIMIT order whose price slipped away between trigger and quote.
Cancellation is possible until the order is submitted, never after.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.errors import InvalidTransition
from engine.models import OrderStatus

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

CANCELLABLE: frozenset[OrderStatus] = frozenset({S.PENDING, S.WAITING, S.ROUTING, S.BUILDING})

TERMINAL: frozenset[OrderStatus] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)


def is_terminal(status: OrderStatus) -> bool:
    return status in TERMINAL


def check_transition(current: OrderStatus, target: OrderStatus) -> OrderStatus:
    """Return ``target`` if ``current -> target`` is legal, else raise :class:`InvalidTransition`."""
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(current.value, target.value)
    return target
