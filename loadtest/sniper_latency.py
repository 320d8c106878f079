"""Launch-to-submit latency of SNIPER orders: pool listed -> swap submitted.

Starts its own engine (default venue timings, simulation admin on, the default watch interval),
places N sniper orders on N fresh mints, lists each pool and reads the ``submitted`` event's
time from the order's stream. Prints p50/p99/max.

    .venv/bin/python -m loadtest.sniper_latency [--orders 10] [--watch-interval-ms 250]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import time
from pathlib import Path

import aiohttp

from engine.lifecycle import TERMINAL
from loadtest.engine_run import EngineRun
from venues.simulated import b58encode


async def _one(session: aiohttp.ClientSession, url: str, ws_url: str) -> float:
    mint = b58encode(secrets.token_bytes(32))
    body = {"tokenIn": "SOL", "tokenOut": mint, "amount": 1, "orderType": "SNIPER"}
    async with session.post(f"{url}/api/orders/execute", json=body) as resp:
        order_id = (await resp.json())["orderId"]
    submitted: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def follow() -> None:
        async with session.ws_connect(f"{ws_url}/api/orders/{order_id}/status") as ws:
            async for message in ws:
                event = json.loads(message.data)
                if event.get("status") == "submitted" and not submitted.done():
                    submitted.set_result(event["timestamp"])
                if event.get("status") in TERMINAL:
                    return

    follower = asyncio.create_task(follow())
    while True:  # listed only once the order is waiting, as a real launch would find it
        async with session.get(f"{url}/api/orders/{order_id}") as resp:
            if (await resp.json())["status"] == "waiting":
                break
        await asyncio.sleep(0.05)
    pool = {"venue": "raydium", "base": mint, "quote": "SOL", "reserveBase": 1_000_000, "reserveQuote": 1_000}
    async with session.post(f"{url}/api/sim/pools", json=pool) as resp:
        listed_at = (await resp.json())["listedAt"]
    latency = await asyncio.wait_for(submitted, 30) - listed_at
    await asyncio.wait_for(follower, 30)
    return float(latency)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=10)
    parser.add_argument("--watch-interval-ms", type=float, default=250.0)
    args = parser.parse_args()
    env = {"OEE_SIM_ADMIN": "true", "OEE_WATCH_INTERVAL_MS": str(args.watch_interval_ms)}
    run = EngineRun("sniper", env, Path(f"/tmp/oee-sniper-{int(time.time())}.log"))
    try:
        await run.start()
        async with aiohttp.ClientSession() as session:
            latencies = [await _one(session, run.url, run.ws_url) for _ in range(args.orders)]
    finally:
        await run.stop()
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"launch-to-submit over {len(latencies)} sniper orders (watch interval {args.watch_interval_ms:g} ms, "
        f"quote 200 ms): p50 {statistics.median(latencies):.0f} ms, p99 {p99:.0f} ms, max {latencies[-1]:.0f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
