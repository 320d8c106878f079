"""A new order type added through the policy registry only: a toy STOP_LOSS (sell once the net price
falls to a stop) is accepted at intake, waits in the watcher, fires on its own rule, queues in the
right band and executes, with no engine file changed for it."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from pydantic_core import PydanticCustomError

from engine.bands import Band
from engine.execution import OrderWorkflow
from engine.intake import Rejection, new_order, parse_order
from engine.models import Order, OrderRequest, OrderStatus
from engine.order_types import band_of, names, policy_of, register, unregister
from engine.order_types.policy import OrderTypePolicy
from engine.watch import Watch
from engine.watching import Verdict, decide
from tests.unit.conftest import make_order
from venues.simulated import METEORA, RAYDIUM, PoolSnapshot
from venues.simulated.market import catalogue_pairs
from venues.simulated.pools import ConstantProductPool

S = OrderStatus
NOW_MS = 1_764_000_000_000.0


class StopLoss(OrderTypePolicy):
    name = "STOP_LOSS"
    waits = True
    problem_fields: ClassVar[dict[str, str]] = {"stop_price_required": "limitPrice"}

    def check(self, request: OrderRequest) -> None:
        if request.limit_price is None:
            raise PydanticCustomError("stop_price_required", "STOP_LOSS orders need limitPrice (the stop)")

    def terms(self, request: OrderRequest) -> dict[str, Any]:
        return {"limit_price": request.limit_price}

    def fires(self, watch: Watch, best_output: float) -> bool:
        return watch.limit_price is not None and best_output / watch.amount <= watch.limit_price

    def waiting_reason(self, order: Order) -> str:
        return f"waiting for the net price to fall to {order.limit_price:g}"


@pytest.fixture
def stop_loss() -> Iterator[None]:
    register(StopLoss())
    yield
    unregister("STOP_LOSS")


def body(**fields: Any) -> bytes:
    return json.dumps({"tokenIn": "SOL", "tokenOut": "USDC", "amount": 2.0, **fields}).encode()


def views(price: float) -> dict[str, PoolSnapshot | None]:
    return {RAYDIUM: PoolSnapshot(ConstantProductPool(reserve_x=10_000.0, reserve_y=10_000.0 * price), "SOL")}


def test_an_unregistered_type_is_refused() -> None:
    rejection = parse_order(body(orderType="STOP_LOSS", limitPrice=140.0), NOW_MS, catalogue_pairs())
    assert isinstance(rejection, Rejection)
    assert [(d["path"], d["code"]) for d in rejection.details] == [(["orderType"], "enum")]
    assert "STOP_LOSS" not in names()


def test_intake_accepts_it_and_keeps_its_own_fields(stop_loss: None) -> None:
    request = parse_order(body(orderType="STOP_LOSS", limitPrice=140.0, maxPrice=9.0), NOW_MS, catalogue_pairs())
    assert isinstance(request, OrderRequest)
    assert request.order_type == "STOP_LOSS"
    order, _ = new_order(request, NOW_MS)
    assert (order.order_type, order.limit_price, order.max_price) == ("STOP_LOSS", 140.0, None)
    assert Order.model_validate_json(order.model_dump_json()) == order  # the hot copy round-trips


def test_intake_reports_its_own_check_at_its_field(stop_loss: None) -> None:
    rejection = parse_order(body(orderType="STOP_LOSS"), NOW_MS, catalogue_pairs())
    assert isinstance(rejection, Rejection)
    assert [(d["path"], d["code"]) for d in rejection.details] == [(["limitPrice"], "stop_price_required")]


def test_it_waits_then_queues_as_triggered(stop_loss: None) -> None:
    order = Order(
        order_id="order_1764000000000_0000abcd",
        token_in="SOL",
        token_out="USDC",
        amount=2.0,
        order_type="STOP_LOSS",
        status=S.PENDING,
        submitted_at=NOW_MS,
        limit_price=140.0,
    )
    assert band_of(order) is Band.ARM
    assert band_of(order.model_copy(update={"status": S.WAITING, "triggered_at": NOW_MS + 1})) is Band.TRIGGERED


def test_the_watcher_fires_it_on_its_own_rule(stop_loss: None) -> None:
    watch = Watch("order_1", "STOP_LOSS", "SOL", "USDC", 2.0, limit_price=140.0)
    assert decide(watch, views(150.0), NOW_MS) is Verdict.WAIT
    assert decide(watch, views(130.0), NOW_MS) is Verdict.TRIGGER
    assert policy_of("STOP_LOSS").floor(make_order(order_type="STOP_LOSS", limit_price=140.0)) == 0.0  # a market sale once fired


async def test_the_workflow_waits_for_it_then_executes_it(stop_loss: None, fakes, journal, active, sink, clock, watcher) -> None:
    oid = "order_1764000000000_0000abcd"
    venues = {RAYDIUM: fakes.Venue(RAYDIUM, rate=130.0), METEORA: fakes.Venue(METEORA, rate=129.0)}
    workflow = OrderWorkflow(
        venues=venues,
        sink=sink,
        journal=journal,
        active=active,
        clock=clock,
        watcher=watcher,
        rng=random.Random(0),
        settlement=fakes.Settlement(venues),
    )
    journal.put(fakes.order(order_type="STOP_LOSS", limit_price=140.0))

    waiting = await workflow.run(oid)
    assert waiting is not None and waiting.status is S.WAITING
    assert journal.events_for(oid)[0].reason == "waiting for the net price to fall to 140"
    assert watcher.watched_ids == [oid]

    await journal.set_triggered(oid, clock.epoch_ms())
    final = await workflow.run(oid)

    assert final is not None and final.status is S.CONFIRMED
    assert [e.status for e in journal.events_for(oid)] == [S.WAITING, S.ROUTING, S.BUILDING, S.SUBMITTED, S.CONFIRMED]
    assert final.routing_decision is not None and final.routing_decision.venue == RAYDIUM
