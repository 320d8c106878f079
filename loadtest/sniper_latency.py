"""Launch-to-submit latency of SNIPER orders: pool listed -> swap submitted.

Starts its own engine (default venue timings, simulation admin on, the default watch interval),
places N sniper orders on N fresh mints, lists each pool and reads the ``submitted`` event's
time from the order's stream. Prints p50/p99/max from two clocks: from the moment the listing
request was sent (an upper bound: it includes that request's own HTTP round trip) and from the
``listedAt`` the listing answered (taken after the venue listed the pool and the edge refreshed
its pairs, so a lower bound).

    .venv/bin/python -m loadtest.sniper_latency [--orders 20] [--watch-interval-ms 250]

The LIMIT counterpart (price crossed -> submitted) is :mod:`loadtest.limit_latency`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp

from engine.lifecycle import TERMINAL
from loadtest.engine_run import EngineRun
from venues.simulated import b58encode


async def follow(
    session: aiohttp.ClientSession, ws_url: str, order_id: str, submitted: asyncio.Future[float], times: dict[str, float] | None = None
) -> None:
    """Read the order's stream to its end; set ``submitted`` to the ``submitted`` event's time (and
    ``times`` to each status's time)."""
    async with session.ws_connect(f"{ws_url}/api/orders/{order_id}/status") as ws:
        async for message in ws:
            event = json.loads(message.data)
            if times is not None and "timestamp" in event:
                times.setdefault(str(event.get("status")), float(event["timestamp"]))
            if event.get("status") == "submitted" and not submitted.done():
                submitted.set_result(float(event["timestamp"]))
            if event.get("status") in TERMINAL:
                return


async def wait_waiting(session: aiohttp.ClientSession, url: str, order_id: str) -> None:
    """Until the order is ``waiting`` (held by the watcher), as a real launch would find it."""
    while True:
        async with session.get(f"{url}/api/orders/{order_id}") as resp:
            if (await resp.json())["status"] == "waiting":
                return
        await asyncio.sleep(0.05)


async def place(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> str:
    async with session.post(f"{url}/api/orders/execute", json=body) as resp:
        answer = await resp.json()
        assert resp.status == 202, answer
        return str(answer["orderId"])


def stages(start: float, times: dict[str, float]) -> dict[str, float]:
    """Where the time went: to the ``routing`` event (push, fire, dispatch, claim), to ``building``
    (routing, the durable decision) and to ``submitted``."""
    return {
        "to routing": times["routing"] - start,
        "routing": times["building"] - times["routing"],
        "to submitted": times["submitted"] - times["building"],
    }


def stage_summary(rows: list[dict[str, float]]) -> str:
    return "; ".join(f"{name} {summary([row[name] for row in rows])}" for name in rows[0])


async def _one(session: aiohttp.ClientSession, url: str, ws_url: str) -> tuple[float, float, dict[str, float]]:
    mint = b58encode(secrets.token_bytes(32))
    order_id = await place(session, url, {"tokenIn": "SOL", "tokenOut": mint, "amount": 1, "orderType": "SNIPER"})
    submitted: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    times: dict[str, float] = {}
    follower = asyncio.create_task(follow(session, ws_url, order_id, submitted, times))
    await wait_waiting(session, url, order_id)
    pool = {"venue": "raydium", "base": mint, "quote": "SOL", "reserveBase": 1_000_000, "reserveQuote": 1_000}
    sent_at = time.time() * 1000
    async with session.post(f"{url}/api/sim/pools", json=pool) as resp:
        listed_at = float((await resp.json())["listedAt"])
    answered_at = time.time() * 1000
    at = await asyncio.wait_for(submitted, 30)
    await asyncio.wait_for(follower, 30)
    return at - sent_at, at - listed_at, {**stages(sent_at, times), "(the listing request itself)": answered_at - sent_at}


def summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered):.0f} ms, p99 {p99:.0f} ms, max {ordered[-1]:.0f} ms"


def engine_env(watch_interval_ms: float, trigger_max_age_ms: float | None) -> dict[str, str]:
    env = {"OEE_SIM_ADMIN": "true", "OEE_WATCH_INTERVAL_MS": str(watch_interval_ms)}
    if trigger_max_age_ms is not None:
        env["OEE_TRIGGER_MAX_AGE_MS"] = str(trigger_max_age_ms)
    return env


def arguments(description: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--watch-interval-ms", type=float, default=250.0)
    parser.add_argument("--trigger-max-age-ms", type=float, default=None, help="OEE_TRIGGER_MAX_AGE_MS (default: the engine's)")
    return parser.parse_args()


async def main() -> None:
    args = arguments(__doc__)
    run = EngineRun("sniper", engine_env(args.watch_interval_ms, args.trigger_max_age_ms), Path(f"/tmp/oee-sniper-{int(time.time())}.log"))
    try:
        await run.start()
        async with aiohttp.ClientSession() as session:
            rows = [await _one(session, run.url, run.ws_url) for _ in range(args.orders)]
    finally:
        await run.stop()
    print(
        f"pool listed -> swap submitted over {len(rows)} sniper orders (watch interval {args.watch_interval_ms:g} ms, quote 200 ms): "
        f"from the listing request {summary([r[0] for r in rows])}; from listedAt {summary([r[1] for r in rows])}"
    )
    print("each, in order (ms):", " ".join(f"{r[1]:.0f}" for r in rows))
    print(f"stages from the listing request: {stage_summary([r[2] for r in rows])}")


if __name__ == "__main__":
    asyncio.run(main())
