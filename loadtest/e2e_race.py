"""End to end at default settings, ours against a peer, side by side: ``python -m loadtest.e2e_race --peer-url URL``.

Each round submits ``--orders`` MARKET orders at once to one server (one connection each), opens each
order's status WebSocket as soon as its 202 arrives, and waits for the order's terminal status
(``confirmed`` or ``failed``) on it. It reports, per server and round, when the last order was confirmed
(seconds after the submission began), the median, and how many were confirmed, failed or never closed.
Rounds alternate (ours, peer, ours, peer), with ``--pause`` seconds between them so each server's rate
limit starts every round as it would for a user arriving fresh.

Ours is started here at default settings (:class:`loadtest.engine_run.EngineRun`: its own database,
Redis prefix in db 12, Ray temp dir and port, all removed after) unless ``--url`` names a running one.
The peer is whatever ``--peer-url`` answers; both must accept the seed system's body and stream
objects with a ``status`` field. Only ``status`` is read, so the peer may send no history on connect:
its socket is opened before its order can finish.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from loadtest.clients import order_bodies

TERMINAL = {"confirmed": "confirmed", "failed": "failed"}


@dataclass
class Outcome:
    status: str  # confirmed, failed, refused (no 202), lost (no terminal status)
    after_s: float


async def one_order(session: aiohttp.ClientSession, base: str, body: bytes, t0: float, timeout_s: float) -> Outcome:
    async with session.post(f"{base}/api/orders/execute", data=body, headers={"Content-Type": "application/json"}) as resp:
        if resp.status != 202:
            return Outcome(f"refused {resp.status}", time.perf_counter() - t0)
        order_id = (await resp.json())["orderId"]
    ws_base = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    try:
        async with asyncio.timeout(timeout_s):
            async with session.ws_connect(f"{ws_base}/api/orders/{order_id}/status") as ws:
                async for msg in ws:
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        continue
                    status = json.loads(msg.data).get("status")
                    if status in TERMINAL:
                        return Outcome(TERMINAL[status], time.perf_counter() - t0)
    except TimeoutError:
        pass
    return Outcome("lost", time.perf_counter() - t0)


async def burst(base: str, count: int, timeout_s: float, seed: int) -> list[Outcome]:
    bodies = order_bodies(count, seed=seed)
    connector = aiohttp.TCPConnector(limit=count * 2)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        t0 = time.perf_counter()
        return list(await asyncio.gather(*(one_order(session, base, b, t0, timeout_s) for b in bodies)))


def summary(outcomes: list[Outcome]) -> dict[str, object]:
    confirmed = [o.after_s for o in outcomes if o.status == "confirmed"]
    closed = [o.after_s for o in outcomes if o.status in ("confirmed", "failed")]
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    return {
        "last_closed_s": round(max(closed), 2) if closed else None,
        "last_confirmed_s": round(max(confirmed), 2) if confirmed else None,
        "median_confirmed_s": round(statistics.median(confirmed), 2) if confirmed else None,
        "counts": counts,
    }


async def main_async(args: argparse.Namespace) -> int:
    from loadtest.engine_run import EngineRun

    engine: EngineRun | None = None
    try:
        if args.url:
            ours = args.url.rstrip("/")
        else:
            engine = EngineRun("e2e-race", {}, Path(args.log))
            print(f"starting our engine at default settings (log {args.log})", flush=True)
            await engine.start()
            print(f"  healthy after {engine.start_s:.1f} s on {engine.url}", flush=True)
            ours = engine.url
        targets = {"ours": ours, "peer": args.peer_url.rstrip("/")}
        last: dict[str, list[float]] = {name: [] for name in targets}
        for round_ in range(1, args.rounds + 1):
            for name, base in targets.items():
                await asyncio.sleep(args.pause)
                s = summary(await burst(base, args.orders, args.timeout, seed=round_))
                if isinstance(s["last_closed_s"], float):
                    last[name].append(s["last_closed_s"])
                print(
                    f"  round {round_} {name:<5} {args.orders} orders: last confirmed after {s['last_confirmed_s']} s,"
                    f" median {s['median_confirmed_s']} s, {s['counts']}",
                    flush=True,
                )
        for name, values in last.items():
            if values:
                print(f"{name}: last order closed after {statistics.median(values):.2f} s (median of {len(values)} rounds)")
        if last["ours"] and last["peer"]:
            ratio = statistics.median(last["ours"]) / statistics.median(last["peer"])
            print(f"ours / peer (time to the last order): {ratio:.2f}x")
        return 0
    finally:
        if engine is not None:
            with contextlib.suppress(Exception):
                await engine.stop()
            print("our engine stopped, its database and Redis keys dropped", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-url", required=True)
    parser.add_argument("--url", help="a running engine of ours (at default settings) instead of starting one")
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pause", type=float, default=5.0, help="seconds before each burst")
    parser.add_argument("--timeout", type=float, default=120.0, help="per order, from its 202 to its terminal status")
    parser.add_argument("--log", default="/tmp/oee-e2e-race.log")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
