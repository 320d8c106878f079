"""At most one landed transaction per order when the executor or the whole engine dies at any step of
the settlement protocol (see tests/reliability/settlement_faults.py). A few orders per step here; the
full matrix is ``python -m loadtest.settlement_faults``."""

from __future__ import annotations

import pytest

from engine.settlement import STEPS
from tests.reliability.conftest import Stacks
from tests.reliability.settlement_faults import run_step


async def test_executors_dying_at_every_step_land_each_order_once(stacks: Stacks) -> None:
    outcome = await run_step(stacks.new(), "executor", "any", orders=10, rate=0.12, start=0)
    print(f"\n{outcome.line()}")
    assert outcome.faults >= 1, "no executor died: the test proved nothing"
    assert outcome.double_landed == 0 and outcome.open == 0
    assert outcome.confirmed == outcome.orders == outcome.landed


@pytest.mark.parametrize("step", STEPS)
async def test_the_engine_killed_at_each_step_lands_each_order_once(stacks: Stacks, step: str) -> None:
    outcome = await run_step(stacks.new(), "engine", step, orders=6, rate=1.0, start=0)
    print(f"\n{outcome.line()}")
    assert outcome.faults >= 1
    assert outcome.double_landed == 0 and outcome.open == 0
    assert outcome.confirmed == outcome.orders == outcome.landed
