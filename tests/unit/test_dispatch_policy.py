"""DispatchPolicy without Ray: slots, the token stock, the least-loaded choice, the redispatch budget
and what a sweep requeues."""

from __future__ import annotations

import pytest

from engine.bands import Band
from engine.dispatch import DispatchPolicy, Round
from engine.models import OrderStatus, OrderType
from tests.unit.conftest import make_order

S = OrderStatus


def policy(executors: int = 2, max_concurrent: int = 4, stock_size: int = 4, **kwargs: int) -> DispatchPolicy:
    return DispatchPolicy(executors=executors, max_concurrent=max_concurrent, stock_size=stock_size, **kwargs)


def ids(n: int, band: Band = Band.MARKET) -> list[tuple[str, Band]]:
    return [(f"o{i}", band) for i in range(n)]


# --------------------------------------------------------------------------- slots


def test_a_round_takes_every_free_slot_up_to_its_limit() -> None:
    p = policy(max_concurrent=4)
    assert p.reserve_slots(64) == 4
    assert p.free_slots() == 0
    assert p.reserve_slots(64) == 0


def test_unused_reservations_are_freed_and_admitted_orders_run() -> None:
    p = policy(max_concurrent=4)
    reserved = p.reserve_slots(64)
    fresh = p.admit(reserved, ids(3))
    assert [order_id for order_id, _ in fresh] == ["o0", "o1", "o2"]
    assert p.running == {"o0", "o1", "o2"}
    assert p.free_slots() == 1


def test_an_order_already_running_or_popped_twice_is_admitted_once() -> None:
    p = policy(max_concurrent=4)
    p.admit(p.reserve_slots(1), [("o0", Band.MARKET)])
    fresh = p.admit(p.reserve_slots(64), [("o0", Band.MARKET), ("o1", Band.MARKET), ("o1", Band.MARKET)])
    assert fresh == [("o1", Band.MARKET)]
    assert p.free_slots() == 2


def test_a_finished_run_frees_its_slot() -> None:
    p = policy(executors=1, max_concurrent=2)
    round_ = p.assign(p.admit(p.reserve_slots(64), ids(2)), [0.0, 0.0])
    assert p.free_slots() == 0
    p.finished(round_.executor, "o0")
    assert p.free_slots() == 1
    assert p.running == {"o1"}
    assert p.peak_running == 2


def test_orders_not_handed_out_free_their_slots() -> None:
    p = policy(max_concurrent=3)
    p.admit(p.reserve_slots(64), ids(3))
    p.release(["o0", "o2"])
    assert p.running == {"o1"}
    assert p.free_slots() == 2


def test_a_failed_pop_gives_every_reserved_slot_back() -> None:
    p = policy(max_concurrent=3)
    p.admit(p.reserve_slots(64), [])
    assert p.free_slots() == 3


# --------------------------------------------------------------------------- tokens


def test_tokens_come_from_the_stock_first() -> None:
    p = policy(stock_size=4)
    p.stocked(3)
    assert p.from_stock(2) == 2
    assert p.stock == 1
    assert p.from_stock(5) == 1  # the other 4 must be reserved from the limiter
    assert p.stock == 0


@pytest.mark.parametrize(("stock", "want"), [(0, 4), (1, 3), (2, 2), (3, 0), (4, 0)])
def test_the_stock_is_topped_up_once_half_used(stock: int, want: int) -> None:
    p = policy(stock_size=4)
    p.stocked(stock)
    assert p.top_up() == want


def test_waits_go_to_the_orders_that_need_a_token_in_order() -> None:
    p = policy(executors=1, max_concurrent=8)
    fresh = p.admit(p.reserve_slots(64), [("m1", Band.MARKET), ("c1", Band.CONTROL), ("t1", Band.TRIGGERED), ("a1", Band.ARM)])
    round_ = p.assign(fresh, [0.5, 1.5])
    assert round_ == Round(0, [("m1", 0.5), ("c1", 0.0), ("t1", 1.5), ("a1", 0.0)])


# --------------------------------------------------------------------------- least loaded


def test_a_round_goes_whole_to_the_least_loaded_executor() -> None:
    p = policy(executors=3, max_concurrent=64)
    first = p.assign(p.admit(p.reserve_slots(3), ids(3)), [0.0] * 3)
    second = p.assign(p.admit(p.reserve_slots(1), [("x", Band.MARKET)]), [0.0])
    assert first.executor == 0 and len(first.orders) == 3
    assert second.executor == 1
    assert p.load == (3, 1, 0)
    for order_id, _ in first.orders:
        p.finished(0, order_id)
    third = p.assign(p.admit(p.reserve_slots(1), [("y", Band.MARKET)]), [0.0])
    assert third.executor == 0  # 0 and 2 are empty now: the first of them
    assert p.dispatched == 5


# --------------------------------------------------------------------------- redispatch budget


def test_a_lost_run_is_requeued_until_its_budget_is_spent() -> None:
    p = policy(max_redispatch=2)
    assert p.lost("o1") is True
    assert p.lost("o1") is True
    assert p.lost("o1") is False
    assert p.redispatches("o1") == 3
    assert p.given_up == {"o1"}
    assert p.lost("o2") is True  # budgets are per order


# --------------------------------------------------------------------------- sweep


def test_suspects_are_open_orders_neither_queued_running_nor_given_up() -> None:
    p = policy(max_concurrent=8, max_redispatch=0)
    p.admit(p.reserve_slots(1), [("running", Band.MARKET)])
    p.lost("abandoned")
    suspects = p.unaccounted(["running", "queued", "abandoned", "lost1", "lost2"], queued={"queued"})
    assert suspects == ["lost1", "lost2"]


def test_a_sweep_requeues_only_open_orders_not_held_by_the_watcher() -> None:
    p = policy(max_concurrent=8)
    lost = make_order("order_1764000000000_00000001", status=S.ROUTING)
    finished = make_order("order_1764000000000_00000002", status=S.CONFIRMED)
    waiting = make_order("order_1764000000000_00000003", status=S.WAITING, order_type=OrderType.LIMIT, limit_price=1.0)
    triggered = make_order("order_1764000000000_00000004", status=S.WAITING, order_type=OrderType.LIMIT, limit_price=1.0, triggered_at=1.0)
    started_meanwhile = make_order("order_1764000000000_00000005", status=S.PENDING)
    p.admit(p.reserve_slots(1), [(started_meanwhile.order_id, Band.MARKET)])
    chosen = p.to_requeue([lost, finished, waiting, triggered, started_meanwhile])
    assert [o.order_id for o in chosen] == [lost.order_id, triggered.order_id]


def test_a_policy_needs_an_executor_and_a_slot() -> None:
    with pytest.raises(ValueError):
        policy(executors=0)
    with pytest.raises(ValueError):
        policy(max_concurrent=0)
