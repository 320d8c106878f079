"""The settlement fault matrix: for each protocol step (signed, persisted, sent, landed, before the
confirmed write), N orders with the executor dying there and N with the whole engine killed -9 there
and restarted; prints, per step, the orders confirmed, left open and landed more than once, counted on
the chain (a chain server of its own, by memo), not by asking the engine.

    python -m loadtest.settlement_faults [--orders 50] [--modes executor,engine] [--steps signed,...]

Private Redis, PostgreSQL and chain processes in a temp dir (as tests/reliability runs them); nothing
shared is touched. Exit status 1 if any order landed twice or was left open.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.settlement import STEPS  # noqa: E402
from tests.reliability.conftest import Stacks  # noqa: E402
from tests.reliability.settlement_faults import StepOutcome, run_step  # noqa: E402


async def matrix(orders: int, modes: list[str], steps: list[str], rate: float) -> list[StepOutcome]:
    stacks = Stacks()
    outcomes: list[StepOutcome] = []
    try:
        stack = stacks.new()
        start = 0
        for mode in modes:
            for step in steps:
                outcome = await run_step(stack, mode, step, orders, rate, start)
                start += orders
                print(outcome.line(), flush=True)
                outcomes.append(outcome)
    finally:
        stacks.close(show_logs=False)
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=50, help="orders per step and mode (default 50)")
    parser.add_argument("--modes", default="executor,engine")
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument(
        "--rate", type=float, default=0.04, help="chance an executor dies when a run passes the step (executor mode; it takes all its runs)"
    )
    args = parser.parse_args()
    began = time.monotonic()
    outcomes = asyncio.run(matrix(args.orders, args.modes.split(","), args.steps.split(","), args.rate))
    total = sum(o.orders for o in outcomes)
    doubled = sum(o.double_landed for o in outcomes)
    still_open = sum(o.open for o in outcomes)
    print(
        f"\n{total} orders over {len(outcomes)} step x mode runs in {time.monotonic() - began:.0f} s: "
        f"{sum(o.confirmed for o in outcomes)} confirmed, {sum(o.failed for o in outcomes)} failed, "
        f"{still_open} open, {doubled} with more than one landed transaction; {sum(o.faults for o in outcomes)} faults injected"
    )
    return 1 if doubled or still_open else 0


if __name__ == "__main__":
    raise SystemExit(main())
