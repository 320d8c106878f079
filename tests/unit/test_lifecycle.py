"""The lifecycle table: every legal edge passes, everything else raises InvalidTransition."""

from __future__ import annotations

import itertools

import pytest

from engine.errors import InvalidTransition
from engine.lifecycle import CANCELLABLE, TERMINAL, TRANSITIONS, check_transition, is_terminal
from engine.models import OrderStatus

S = OrderStatus

LEGAL = sorted((src, dst) for src, targets in TRANSITIONS.items() for dst in targets)
ILLEGAL = sorted((src, dst) for src, dst in itertools.product(S, S) if dst not in TRANSITIONS[src])

EXPECTED_LEGAL = {
    # a new order: armed (LIMIT/SNIPER), routed (MARKET), or closed before it started
    (S.PENDING, S.WAITING),
    (S.PENDING, S.ROUTING),
    (S.PENDING, S.FAILED),
    (S.PENDING, S.CANCELLED),
    (S.PENDING, S.EXPIRED),
    # waiting for its condition: triggered, or closed
    (S.WAITING, S.ROUTING),
    (S.WAITING, S.FAILED),
    (S.WAITING, S.CANCELLED),
    (S.WAITING, S.EXPIRED),
    # routing: retry, re-arm (the price slipped away from the limit), build, or close
    (S.ROUTING, S.ROUTING),
    (S.ROUTING, S.WAITING),
    (S.ROUTING, S.BUILDING),
    (S.ROUTING, S.FAILED),
    (S.ROUTING, S.CANCELLED),
    (S.BUILDING, S.ROUTING),
    (S.BUILDING, S.SUBMITTED),
    (S.BUILDING, S.FAILED),
    (S.BUILDING, S.CANCELLED),
    # submitted: past the point of no return
    (S.SUBMITTED, S.ROUTING),
    (S.SUBMITTED, S.CONFIRMED),
    (S.SUBMITTED, S.FAILED),
}


def test_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(S)


def test_table_is_exactly_the_documented_lifecycle() -> None:
    assert set(LEGAL) == EXPECTED_LEGAL


@pytest.mark.parametrize(("src", "dst"), LEGAL, ids=[f"{a}->{b}" for a, b in LEGAL])
def test_legal_edge_passes(src: OrderStatus, dst: OrderStatus) -> None:
    assert check_transition(src, dst) is dst


@pytest.mark.parametrize(("src", "dst"), ILLEGAL, ids=[f"{a}->{b}" for a, b in ILLEGAL])
def test_illegal_edge_raises(src: OrderStatus, dst: OrderStatus) -> None:
    with pytest.raises(InvalidTransition) as info:
        check_transition(src, dst)
    assert str(info.value) == f"{src.value.upper()} -> {dst.value.upper()}"
    assert info.value.current == src.value
    assert info.value.target == dst.value


@pytest.mark.parametrize(
    ("src", "dst", "message"),
    [
        (S.PENDING, S.BUILDING, "PENDING -> BUILDING"),
        (S.PENDING, S.SUBMITTED, "PENDING -> SUBMITTED"),
        (S.PENDING, S.CONFIRMED, "PENDING -> CONFIRMED"),
        (S.PENDING, S.PENDING, "PENDING -> PENDING"),
        (S.WAITING, S.WAITING, "WAITING -> WAITING"),
        (S.WAITING, S.BUILDING, "WAITING -> BUILDING"),
        (S.WAITING, S.CONFIRMED, "WAITING -> CONFIRMED"),
        (S.ROUTING, S.SUBMITTED, "ROUTING -> SUBMITTED"),
        (S.ROUTING, S.CONFIRMED, "ROUTING -> CONFIRMED"),
        (S.ROUTING, S.EXPIRED, "ROUTING -> EXPIRED"),
        (S.BUILDING, S.CONFIRMED, "BUILDING -> CONFIRMED"),
        (S.BUILDING, S.WAITING, "BUILDING -> WAITING"),
        (S.SUBMITTED, S.BUILDING, "SUBMITTED -> BUILDING"),
        (S.SUBMITTED, S.CANCELLED, "SUBMITTED -> CANCELLED"),
        (S.SUBMITTED, S.WAITING, "SUBMITTED -> WAITING"),
        (S.CONFIRMED, S.ROUTING, "CONFIRMED -> ROUTING"),
        (S.CONFIRMED, S.FAILED, "CONFIRMED -> FAILED"),
        (S.FAILED, S.ROUTING, "FAILED -> ROUTING"),
        (S.FAILED, S.CONFIRMED, "FAILED -> CONFIRMED"),
        (S.CANCELLED, S.ROUTING, "CANCELLED -> ROUTING"),
        (S.EXPIRED, S.WAITING, "EXPIRED -> WAITING"),
    ],
)
def test_illegal_edge_message(src: OrderStatus, dst: OrderStatus, message: str) -> None:
    with pytest.raises(InvalidTransition, match=f"^{message}$"):
        check_transition(src, dst)


def test_terminal_states() -> None:
    assert frozenset({S.CONFIRMED, S.FAILED, S.CANCELLED, S.EXPIRED}) == TERMINAL


@pytest.mark.parametrize("status", [S.CONFIRMED, S.FAILED, S.CANCELLED, S.EXPIRED])
def test_terminal_states_have_no_exits(status: OrderStatus) -> None:
    assert is_terminal(status)
    assert TRANSITIONS[status] == frozenset()
    for target in S:
        with pytest.raises(InvalidTransition):
            check_transition(status, target)


@pytest.mark.parametrize("status", [S.PENDING, S.WAITING, S.ROUTING, S.BUILDING, S.SUBMITTED])
def test_working_states_can_fail_and_are_not_terminal(status: OrderStatus) -> None:
    assert not is_terminal(status)
    assert check_transition(status, S.FAILED) is S.FAILED
    assert check_transition(status, S.ROUTING) is S.ROUTING


def test_cancellable_states_are_those_before_submission() -> None:
    assert frozenset({S.PENDING, S.WAITING, S.ROUTING, S.BUILDING}) == CANCELLABLE


@pytest.mark.parametrize("status", list(S))
def test_only_cancellable_states_can_be_cancelled(status: OrderStatus) -> None:
    if status in CANCELLABLE:
        assert check_transition(status, S.CANCELLED) is S.CANCELLED
    else:
        with pytest.raises(InvalidTransition):
            check_transition(status, S.CANCELLED)


@pytest.mark.parametrize("status", list(S))
def test_only_orders_not_yet_routed_can_expire(status: OrderStatus) -> None:
    if status in (S.PENDING, S.WAITING):
        assert check_transition(status, S.EXPIRED) is S.EXPIRED
    else:
        with pytest.raises(InvalidTransition):
            check_transition(status, S.EXPIRED)


def test_routing_can_re_arm_a_limit_order_but_later_states_cannot() -> None:
    assert check_transition(S.ROUTING, S.WAITING) is S.WAITING
    assert [s for s in S if S.WAITING in TRANSITIONS[s]] == [S.PENDING, S.ROUTING]


def test_every_status_is_reachable_from_pending() -> None:
    seen = {S.PENDING}
    frontier = [S.PENDING]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(S)
