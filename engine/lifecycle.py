"""The order lifecycle as one transition table.

``routing`` may be re-entered from any working state: that is a retry after a
transient fault (the event carries the new attempt number).
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.errors import InvalidTransition
from engine.models import OrderStatus

S = OrderStatus

TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING: frozenset({S.ROUTING, S.FAILED}),
    S.ROUTING: frozenset({S.ROUTING, S.BUILDING, S.FAILED}),
    S.BUILDING: frozenset({S.ROUTING, S.SUBMITTED, S.FAILED}),
    S.SUBMITTED: frozenset({S.ROUTING, S.CONFIRMED, S.FAILED}),
    S.CONFIRMED: frozenset(),
    S.FAILED: frozenset(),
}

TERMINAL: frozenset[OrderStatus] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)


def is_terminal(status: OrderStatus) -> bool:
    return status in TERMINAL


def check_transition(current: OrderStatus, target: OrderStatus) -> OrderStatus:
    """Return ``target`` if ``current -> target`` is legal, else raise :class:`InvalidTransition`."""
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(current.value, target.value)
    return target
