"""Fault injection at the settlement protocol's steps against a real engine, counted on the chain.

Shared by tests/reliability/test_settlement_faults.py (a few orders per step) and
``python -m loadtest.settlement_faults`` (the full matrix). Two kinds of fault:

* ``executor``: the engine runs with ``OEE_CHAIN_FAULT_MODE=exit``: an executor process that passes the
  step exits at once (with the rate's chance), Ray restarts it and its orders are dispatched again.
* ``engine``: the engine runs with ``OEE_CHAIN_FAULT_MODE=hang``: runs stop at the step; once one has,
  the whole engine (Ray included) is killed -9 and a new engine without faults is started on the same
  stores and chain, which must finish every order.

Either way every order must end, and the chain (the test chain server, its own process) must hold at
most one landed transaction per order, counted from its transactions' memos.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from tests.chain_scan import landed_per_order, scan_rpc
from tests.reliability.conftest import Stack, kill_engine
from tests.reliability.helpers import audit, statuses, submit_orders, wait_terminal

ENV = {"OEE_SWAP_LATENCY_MS": "100-300", "OEE_MAX_CONCURRENT_ORDERS": "20", "OEE_RETRY_BASE_DELAY_MS": "100"}


@dataclass
class StepOutcome:
    mode: str
    step: str
    orders: int
    confirmed: int
    failed: int
    open: int
    double_landed: int
    landed: int
    faults: int
    took_s: float

    def line(self) -> str:
        return (
            f"{self.mode:8} {self.step:14} orders {self.orders:3}  confirmed {self.confirmed:3}  failed {self.failed:2}  "
            f"open {self.open}  landed {self.landed:3}  double-landed {self.double_landed}  faults {self.faults:3}  {self.took_s:5.1f} s"
        )


def _faults_in(log_path: Path) -> int:
    try:
        return log_path.read_text(errors="replace").count("injecting a fault")
    except OSError:
        return 0


async def run_step(stack: Stack, mode: str, step: str, orders: int, rate: float, start: int) -> StepOutcome:
    """Submit ``orders`` orders to an engine that faults at ``step``; finish them; count on the chain."""
    began = time.monotonic()
    db = stack.stores.database_url
    faults = 0
    if mode == "executor":
        engine = stack.engine(**ENV, OEE_CHAIN_FAULT_STEP=step, OEE_CHAIN_FAULT_RATE=str(rate), OEE_CHAIN_FAULT_MODE="exit")
        await asyncio.to_thread(engine.start)
        ids, _ = await submit_orders(engine.url, orders, start=start)
        await wait_terminal(db, ids, timeout_s=300)
        faults = _faults_in(engine.log_path)
        await asyncio.to_thread(engine.stop)
    else:
        marker = stack.root / f"hung-{step}-{start}"
        engine = stack.engine(
            **ENV, OEE_CHAIN_FAULT_STEP=step, OEE_CHAIN_FAULT_RATE="1", OEE_CHAIN_FAULT_MODE="hang", OEE_CHAIN_FAULT_MARKER=str(marker)
        )
        await asyncio.to_thread(engine.start)
        ids, _ = await submit_orders(engine.url, orders, start=start)
        deadline = time.monotonic() + 120
        while not marker.exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"no run reached {step} in 120 s")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # let more runs reach the step
        faults = _faults_in(engine.log_path)
        report = await asyncio.to_thread(kill_engine, engine)
        assert not report.left, report.left
        again = stack.engine(**ENV)
        await asyncio.to_thread(again.start)
        await wait_terminal(db, ids, timeout_s=300)
        await asyncio.to_thread(again.stop)
    found = await statuses(db, ids)
    result = await audit(db, ids, stack.chain.url)
    landed = landed_per_order(await scan_rpc(stack.chain.url))
    mine = {i: landed[i] for i in ids}
    assert not result.problems(), result.problems()
    return StepOutcome(
        mode=mode,
        step=step,
        orders=len(ids),
        confirmed=sum(1 for s in found.values() if s == "confirmed"),
        failed=sum(1 for s in found.values() if s == "failed"),
        open=sum(1 for s in found.values() if s not in ("confirmed", "failed", "cancelled", "expired")),
        double_landed=sum(1 for n in mine.values() if n > 1),
        landed=sum(mine.values()),
        faults=faults,
        took_s=time.monotonic() - began,
    )
