"""Cross-to-submit latency of LIMIT orders: price crossed -> swap submitted.

Starts its own engine (default venue timings, simulation admin on, the default watch interval).
For each of N orders it lists a pool on a fresh mint (1,000 SOL against 1,000,000 of the mint:
1,000 of it per SOL), places a LIMIT order for 1 SOL at 1,030 per SOL (above the market, so it
waits), and once it is ``waiting`` moves the pool's price 10% (simulation admin ``move_price``:
then ~1,107 per SOL net of fees, past the limit). The latency runs from the moment the move was
sent (it includes that request's own HTTP round trip) to the ``submitted`` event's time. Prints
p50/p99/max.

    .venv/bin/python -m loadtest.limit_latency [--orders 20] [--watch-interval-ms 250]
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import aiohttp

from loadtest.engine_run import EngineRun
from loadtest.sniper_latency import arguments, engine_env, follow, place, stage_summary, stages, summary, wait_waiting
from venues.simulated import b58encode

LIMIT_PRICE = 1_030.0


async def _one(session: aiohttp.ClientSession, url: str, ws_url: str) -> tuple[float, dict[str, float]]:
    mint = b58encode(secrets.token_bytes(32))
    pool = {"venue": "raydium", "base": mint, "quote": "SOL", "reserveBase": 1_000_000, "reserveQuote": 1_000}
    async with session.post(f"{url}/api/sim/pools", json=pool) as resp:
        assert resp.status == 201, await resp.text()
    body = {"tokenIn": "SOL", "tokenOut": mint, "amount": 1, "orderType": "LIMIT", "limitPrice": LIMIT_PRICE}
    order_id = await place(session, url, body)
    submitted: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    times: dict[str, float] = {}
    follower = asyncio.create_task(follow(session, ws_url, order_id, submitted, times))
    await wait_waiting(session, url, order_id)
    await asyncio.sleep(0.3)  # past a poll or two below the limit: it must fire on the move, not before
    assert not submitted.done(), "the order fired before its price was crossed"
    move = {"venue": "raydium", "base": mint, "quote": "SOL", "percent": -10.0}
    sent_at = time.time() * 1000
    async with session.post(f"{url}/api/sim/price", json=move) as resp:
        assert resp.status == 200, await resp.text()
    answered_at = time.time() * 1000
    at = await asyncio.wait_for(submitted, 30)
    await asyncio.wait_for(follower, 30)
    return at - sent_at, {**stages(sent_at, times), "(the move request itself)": answered_at - sent_at}


async def main() -> None:
    args = arguments(__doc__)
    run = EngineRun("limit", engine_env(args.watch_interval_ms, args.trigger_max_age_ms), Path(f"/tmp/oee-limit-{int(time.time())}.log"))
    try:
        await run.start()
        async with aiohttp.ClientSession() as session:
            rows = [await _one(session, run.url, run.ws_url) for _ in range(args.orders)]
    finally:
        await run.stop()
    print(
        f"price crossed -> swap submitted over {len(rows)} LIMIT orders (watch interval {args.watch_interval_ms:g} ms, "
        f"quote 200 ms), from the move request: {summary([r[0] for r in rows])}"
    )
    print("each, in order (ms):", " ".join(f"{r[0]:.0f}" for r in rows))
    print(f"stages from the move request: {stage_summary([r[1] for r in rows])}")


if __name__ == "__main__":
    asyncio.run(main())
