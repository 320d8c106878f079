"""Actor death mid-order: ``ray.kill`` (Ray restarts the actor) an OrderExecutor, a quoter, the StatusHub.

An order hit by the kill completes exactly once (one terminal state, one landed transaction on the
chain, the order naming its signature); WebSocket clients of a killed hub still get every event, in order, once, and their
streams go live again once the hub is back (not only through the 5 s PostgreSQL catch-up).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.engine_process import EngineProcess
from tests.reliability.conftest import RayTool, Stack, Stacks
from tests.reliability.helpers import (
    audit,
    check_trail,
    engine_log,
    follow_timed,
    log_lines,
    pg_connect,
    submit_orders,
    wait_status,
    wait_terminal,
)

pytestmark = pytest.mark.slow

CONCURRENCY = 3  # orders queue up, so some run only after a killed actor is back
ENV = {
    "OEE_SWAP_LATENCY_MS": "800-1200",
    "OEE_MAX_CONCURRENT_ORDERS": str(CONCURRENCY),
    "OEE_SIM_ADMIN": "true",  # the hub test holds LIMIT orders back until the hub is back, then moves the price
    "OEE_WATCH_INTERVAL_MS": "50",
}
HELD = 3
"""LIMIT orders whose streams open before the hub is killed and whose price is crossed only once it is
back (and a second has passed): their execution events are published after the restart however long
the restart takes on a loaded machine."""
HELD_LIMIT_USDC_PER_SOL = 1_000.0
PRICE_MOVE_PCT = 600.0  # SOL/USDC at about 150 -> about 1,050: past the held orders' limit
# After the hub restart, streams must be live again, not only caught up from PostgreSQL (which a quiet stream does
# every 5 s, putting the p90 of catch-up-only delivery near 4.5 s). Live delivery is calibrated on the same streams
# before the kill (the machine may be loaded): the p90 after the restart must stay within twice the p90 before,
# at least 2.5 s, and never above 4 s.
LIVE_FLOOR_MS, LIVE_CAP_MS = 2500.0, 4000.0


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(len(ordered) * 0.9)] if ordered else 0.0


@pytest.fixture(scope="module")
def engine(module_stacks: Stacks) -> Iterator[tuple[Stack, EngineProcess]]:
    stack = module_stacks.new()
    proc = stack.engine(**ENV)
    proc.start()
    yield stack, proc


async def _submit_held_limits(url: str) -> list[str]:
    """LIMIT orders (sell 1 SOL for at least 1,000 USDC) that wait until the test moves the price."""
    body = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 1.0, "orderType": "LIMIT", "limitPrice": HELD_LIMIT_USDC_PER_SOL}
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        answers = [await client.post("/api/orders/execute", json={**body, "slippageBps": 1000}) for _ in range(HELD)]
    assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
    return [str(a.json()["orderId"]) for a in answers]


async def _move_sol_usdc(url: str, percent: float) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for venue in ("raydium", "meteora"):
            moved = await client.post("/api/sim/price", json={"venue": venue, "base": "SOL", "quote": "USDC", "percent": percent})
            assert moved.status_code == 200, moved.text


async def _check_completed_once(db: str, ids: list[str], label: str, chain_url: str) -> Any:
    await wait_terminal(db, ids, timeout_s=180)
    result = await audit(db, ids, chain_url)
    print(f"{label}: {result.line()}")
    assert not result.problems(), result.problems()
    assert result.by_status["confirmed"] == len(ids), (dict(result.by_status), dict(result.failure_reasons))
    return result


async def test_executor_killed_mid_swap(engine: tuple[Stack, EngineProcess], raytool: RayTool) -> None:
    stack, proc = engine
    db = stack.stores.database_url
    ids, _ = await submit_orders(proc.url, 9)
    await wait_status(db, ids, "submitted", at_least=2, timeout_s=30)
    running = await raytool.attr("order_executor_0", "running")
    before, after, restart_s = await raytool.kill_and_wait_restart("order_executor_0")
    result = await _check_completed_once(db, ids, "executor kill", stack.chain.url)
    ours = [line for line in log_lines(engine_log(proc), r"executor lost the order|adopting swap") if any(i in line for i in ids)]
    print(
        f"executor kill: order_executor_0 pid {before} -> {after} (back in {restart_s:.1f} s), {running} orders running on it; "
        f"log: lost {sum('lost the order' in line for line in ours)}, adopted {sum('adopting' in line for line in ours)}; "
        f"confirmed {result.by_status['confirmed']}/{len(ids)}, swaps/order {dict(result.swaps_per_order)}"
    )
    assert running >= 1, "the killed executor had no order in flight: the test proved nothing"


async def test_quoter_killed_mid_swap(engine: tuple[Stack, EngineProcess], raytool: RayTool) -> None:
    stack, proc = engine
    db = stack.stores.database_url
    ids, _ = await submit_orders(proc.url, 9, start=100)
    await wait_status(db, ids, "submitted", at_least=2, timeout_s=30)
    conn = await pg_connect(db)
    try:
        venues = Counter(
            r["venue"]
            for r in await conn.fetch(
                "SELECT routing_decision->>'venue' AS venue FROM orders WHERE order_id = any($1::text[]) AND status = 'submitted'", ids
            )
        )
    finally:
        await conn.close()
    venue = venues.most_common(1)[0][0]
    in_flight = await raytool.attr(f"{venue}_quoter", "_venue.committing")
    before, after, restart_s = await raytool.kill_and_wait_restart(f"{venue}_quoter")
    result = await _check_completed_once(db, ids, "quoter kill", stack.chain.url)
    print(
        f"quoter kill: {venue}_quoter pid {before} -> {after} (back in {restart_s:.1f} s) with {in_flight} swaps in flight; "
        f"orders retried {len(result.retried)}, confirmed {result.by_status['confirmed']}/{len(ids)}, "
        f"swaps/order {dict(result.swaps_per_order)}, double swaps {len(result.double_swaps)}"
    )
    assert in_flight is None or in_flight >= 1, "no leg was being agreed at the killed quoter: the test proved nothing"


async def test_status_hub_killed_streams_resume_in_order(engine: tuple[Stack, EngineProcess], raytool: RayTool) -> None:
    stack, proc = engine
    db = stack.stores.database_url
    market, _ = await submit_orders(proc.url, 12, start=200)  # rounds of 3: some events come after the hub is back
    held = await _submit_held_limits(proc.url)
    ids = market + held
    followers = [asyncio.create_task(follow_timed(proc.ws_url, i, timeout_s=180)) for i in ids]
    await wait_status(db, market, "confirmed", at_least=2, timeout_s=120)  # some live delivery to calibrate on
    await wait_status(db, held, "waiting", at_least=HELD, timeout_s=120)
    kill_ms = time.time() * 1000
    before, after, restart_s = await raytool.kill_and_wait_restart("status_hub")
    back_ms = time.time() * 1000
    await asyncio.sleep(1.5)  # past the 1 s after which an event counts as published on the restarted hub
    await _move_sol_usdc(proc.url, PRICE_MOVE_PCT)  # the held orders fire now
    try:
        # Only the streams opened before the kill run now: no new subscription wakes the replica up, so what is
        # measured is the replica noticing the restarted hub on its own.
        streams = await asyncio.gather(*followers)
    finally:
        await _move_sol_usdc(proc.url, -100 * PRICE_MOVE_PCT / (100 + PRICE_MOVE_PCT))  # back to where it was
    late_ids, _ = await submit_orders(proc.url, 3, start=300)  # then new streams on the restarted hub
    late_streams = await asyncio.gather(*(follow_timed(proc.ws_url, i, timeout_s=90) for i in late_ids))
    everything = ids + late_ids
    result = await _check_completed_once(db, everything, "hub kill", stack.chain.url)

    lags: list[float] = []
    baseline: list[float] = []
    late_lags: list[float] = []
    for order_id, (messages, code) in zip(everything, [*streams, *late_streams], strict=True):
        events = [m for m in messages if m.get("type") == "status"]
        trail = [(m["seq"], m["status"]) for m in events]
        assert messages and messages[0]["type"] == "connected", (order_id, messages[:2])
        assert trail == result.trails[order_id], f"{order_id}: stream {trail} != journal {result.trails[order_id]}"
        assert check_trail(trail) is None and code == 1000, (order_id, trail, code)
        live = [m["_rx"] - m["timestamp"] for m in events if m["timestamp"] >= messages[0]["_rx"]]  # published while connected
        if order_id in late_ids:
            late_lags += live
            continue
        lags += [m["_rx"] - m["timestamp"] for m in events if m["timestamp"] >= back_ms + 1000]
        baseline += [m["_rx"] - m["timestamp"] for m in events if messages[0]["_rx"] <= m["timestamp"] < kill_ms]
    lags.sort()
    worst = lags[-1] if lags else 0.0
    p50 = lags[len(lags) // 2] if lags else 0.0
    bound = min(LIVE_CAP_MS, max(LIVE_FLOOR_MS, 2 * p90(baseline)))
    print(
        f"hub kill: status_hub pid {before} -> {after} (back in {restart_s:.1f} s); {len(everything)} streams complete, in order, "
        f"no duplicates ({len(ids)} opened before the kill, {len(late_ids)} after); {len(lags)} events published >1 s after the "
        f"hub was back reached the streams opened before the kill in p50 {p50:.0f} ms, p90 {p90(lags):.0f} ms, max {worst:.0f} ms; "
        f"live before the kill: p90 {p90(baseline):.0f} ms over {len(baseline)} events (bound after the restart: p90 <= {bound:.0f} ms); "
        f"streams opened after the restart: p90 {p90(late_lags):.0f} ms"
    )
    assert lags, "no event after the hub came back: the test proved nothing"
    assert p90(lags) <= bound, f"streams did not go live again after the hub restart: p90 lag {p90(lags):.0f} ms > {bound:.0f} ms"
    assert p90(late_lags) <= bound, f"streams opened on the restarted hub are not live: p90 {p90(late_lags):.0f} ms"
