"""At most one landed transaction per order when the executor or the whole engine dies at any step of
the settlement protocol (see tests/reliability/settlement_faults.py). A few orders per step here; the
full matrix is ``python -m loadtest.settlement_faults``."""

from __future__ import annotations

import pytest

from engine.settlement import STEPS
from tests.reliability.conftest import Stacks
from tests.reliability.settlement_faults import run_step


@pytest.mark.timeout(900)
async def test_executors_dying_at_every_step_land_each_order_once(stacks: Stacks) -> None:
    """Each death takes every run of its executor, so the chance per step is kept low; rounds of 10
    orders until executors did die (an order lost five times fails, having landed nothing)."""
    stack = stacks.new()
    faults = 0
    for round_no in range(4):
        outcome = await run_step(stack, "executor", "any", orders=10, rate=0.06, start=round_no * 10)
        print(f"\n{outcome.line()}")
        assert outcome.double_landed == 0 and outcome.open == 0
        assert outcome.confirmed + outcome.failed == outcome.orders and outcome.landed == outcome.confirmed
        faults += outcome.faults
        if faults:
            break
    assert faults >= 1, "no executor died in four rounds: the test proved nothing"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("step", STEPS)
async def test_the_engine_killed_at_each_step_lands_each_order_once(stacks: Stacks, step: str) -> None:
    outcome = await run_step(stacks.new(), "engine", step, orders=6, rate=1.0, start=0)
    print(f"\n{outcome.line()}")
    assert outcome.faults >= 1
    assert outcome.double_landed == 0 and outcome.open == 0
    assert outcome.confirmed == outcome.orders == outcome.landed
