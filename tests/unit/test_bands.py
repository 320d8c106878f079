"""band_of: which queue band an order goes to, and which bands take a rate-limit token (no Redis is contacted)."""

from __future__ import annotations

import pytest

from engine.adapters.redis_store import _BAND_SPAN, queue_score
from engine.bands import Band
from engine.models import OrderStatus, OrderType
from engine.order_types import band_of
from tests.unit.conftest import make_order

S, T = OrderStatus, OrderType
TRIGGERED_AT = 1_764_000_000_500.0


@pytest.mark.parametrize("status", [S.PENDING, S.ROUTING, S.BUILDING, S.SUBMITTED])
def test_market_orders_go_to_the_market_band(status: OrderStatus) -> None:
    assert band_of(make_order(status=status)) is Band.MARKET


@pytest.mark.parametrize("order_type", [T.LIMIT, T.SNIPER])
@pytest.mark.parametrize("status", [S.PENDING, S.WAITING])
def test_a_new_limit_or_sniper_order_is_armed(order_type: OrderType, status: OrderStatus) -> None:
    assert band_of(make_order(status=status, order_type=order_type, limit_price=150.0)) is Band.ARM


@pytest.mark.parametrize("order_type", [T.LIMIT, T.SNIPER])
@pytest.mark.parametrize("status", [S.PENDING, S.WAITING])
def test_a_triggered_order_runs_the_market_path(order_type: OrderType, status: OrderStatus) -> None:
    order = make_order(status=status, order_type=order_type, limit_price=150.0, triggered_at=TRIGGERED_AT)
    assert band_of(order) is Band.TRIGGERED


@pytest.mark.parametrize("status", [S.ROUTING, S.BUILDING, S.SUBMITTED])
def test_a_limit_order_resumed_mid_execution_is_not_re_armed(status: OrderStatus) -> None:
    assert band_of(make_order(status=status, order_type=T.LIMIT, limit_price=150.0)) is Band.TRIGGERED


@pytest.mark.parametrize(
    "order",
    [
        make_order(cancel_requested=True),
        make_order(order_type=T.LIMIT, limit_price=150.0, cancel_requested=True),
        make_order(status=S.WAITING, order_type=T.LIMIT, limit_price=150.0, cancel_requested=True, triggered_at=TRIGGERED_AT),
        make_order(status=S.BUILDING, order_type=T.SNIPER, cancel_requested=True),
    ],
    ids=["market", "new-limit", "triggered-limit", "building-sniper"],
)
def test_a_cancel_request_goes_to_the_control_band(order) -> None:
    assert band_of(order) is Band.CONTROL


def test_only_market_and_triggered_runs_take_a_token() -> None:
    assert {band for band in Band if band.needs_token} == {Band.MARKET, Band.TRIGGERED}
    assert not Band.CONTROL.needs_token
    assert not Band.ARM.needs_token


def test_bands_are_served_control_market_arm_triggered() -> None:
    assert sorted(Band) == [Band.CONTROL, Band.MARKET, Band.ARM, Band.TRIGGERED]


def test_the_band_dominates_the_queue_score() -> None:
    late_market = make_order(order_id="order_1764000009999_00000001").model_copy(update={"submitted_at": 1_764_000_999_999.0})
    early_arm = make_order(order_type=T.LIMIT, limit_price=150.0)
    assert queue_score(late_market) < queue_score(early_arm)
    assert queue_score(early_arm) == Band.ARM * _BAND_SPAN + early_arm.submitted_at
    assert queue_score(make_order(cancel_requested=True)) < queue_score(make_order())
