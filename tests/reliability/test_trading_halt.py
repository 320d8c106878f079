"""The kill switch survives a restart: halt with orders queued, stop the engine, restart Redis EMPTY
(the state's mirror is gone), start the engine again. It is still halted (PostgreSQL is the truth),
refuses submissions with the same reason, and dispatches nothing; resuming lets every order finish.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import httpx
import pytest

from tests.reliability.conftest import Stacks
from tests.reliability.helpers import audit, statuses, wait_terminal

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # two engine starts: 60-120 s each on a busy machine

ADMIN_KEY = secrets.token_urlsafe(32)
ENV = {
    "OEE_ADMIN_KEY": ADMIN_KEY,
    "OEE_MAX_CONCURRENT_ORDERS": "1",
    "OEE_RATE_LIMIT_PER_MINUTE": "60",
    "OEE_RATE_LIMIT_BURST": "1",
    "OEE_SWAP_LATENCY_MS": "100-200",
}
ORDER = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 0.5, "slippageBps": 1000, "orderType": "MARKET"}
HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def test_a_halt_survives_a_restart_and_an_empty_redis(stacks: Stacks) -> None:
    stack = stacks.new()
    db = stack.stores.database_url
    engine = stack.engine(**ENV)
    await asyncio.to_thread(engine.start)
    async with httpx.AsyncClient(base_url=engine.url, headers=HEADERS, timeout=30) as client:
        ids = [(await client.post("/api/orders/execute", json=ORDER)).json()["orderId"] for _ in range(6)]
        halted = await client.put("/api/admin/trading-state", json={"state": "halted", "reason": "restart drill"})
        assert halted.status_code == 200
    await asyncio.sleep(1.5)  # whatever was handed out before the halt has begun
    before = await statuses(db, ids)

    stopped_at = time.monotonic()
    assert await asyncio.to_thread(engine.stop) == 0
    await asyncio.to_thread(stack.redis.restart_empty)  # the mirror of the state, the queue: all gone
    await asyncio.to_thread(engine.start)
    restart_s = time.monotonic() - stopped_at

    async with httpx.AsyncClient(base_url=engine.url, headers=HEADERS, timeout=30) as client:
        state = (await client.get("/api/admin/trading-state")).json()
        assert (state["state"], state["reason"], state["changedBy"]) == ("halted", "restart drill", "admin"), state
        refused = await client.post("/api/orders/execute", json=ORDER)
        assert refused.status_code == 503 and refused.json() == {"error": "Trading halted", "message": "restart drill"}
        await asyncio.sleep(4.0)  # recovery requeued the open orders; four dispatch rounds at 1/s would have run some
        after = await statuses(db, ids)
        held = [i for i in ids if before[i] == "pending"]
        assert held and all(after[i] == "pending" for i in held), (before, after)
        resumed = await client.put("/api/admin/trading-state", json={"state": "active", "reason": "drill over"})
        assert resumed.status_code == 200
        await wait_terminal(db, ids, timeout_s=120)
        accepted = await client.post("/api/orders/execute", json=ORDER)
        assert accepted.status_code == 202
        history = (await client.get("/api/admin/trading-state")).json()["history"]
    result = await audit(db, ids, stack.chain.url)
    assert not result.problems(), result.problems()
    assert set(result.by_status) == {"confirmed"}, result.by_status
    assert [(h["state"], h["reason"]) for h in history[:2]] == [("active", "drill over"), ("halted", "restart drill")]
    print(
        f"\nhalt across a restart with Redis emptied: {len(held)} of 6 orders held pending through a {restart_s:.0f} s restart "
        f"and 4 s after it; resumed, all {dict(result.by_status)}"
    )
