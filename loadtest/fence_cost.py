"""What run fencing costs an order: ``claim_run`` (the epoch increment and the load, one statement)
next to the plain ``load`` it replaces, and ``may_sign`` (the epoch check before a swap).

    .venv/bin/python -m loadtest.fence_cost              # ~20 s; --orders 2000 --dsn postgresql://...

Runs against the local PostgreSQL (127.0.0.1:5432) in a scratch database of its own, dropped at the
end. Calls are made one at a time (no batching), so each figure is one round trip's latency.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable

import asyncpg

from engine.adapters.postgres import PostgresJournal, create_pool, prepare_database
from engine.intake import NewOrder, new_order
from engine.models import OrderRequest, OrderType
from engine.ports import ClaimedRun


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _time(call: Callable[[str], Awaitable[object]], ids: list[str]) -> list[float]:
    """Milliseconds per call, one call at a time."""
    out = []
    for order_id in ids:
        started = time.perf_counter()
        await call(order_id)
        out.append((time.perf_counter() - started) * 1000)
    return out


async def main(admin_dsn: str, orders: int) -> None:
    database = f"oee_fence_cost_{secrets.token_hex(4)}"
    dsn = admin_dsn.rsplit("/", 1)[0] + f"/{database}"
    await prepare_database(dsn)
    pool = await create_pool(dsn, min_size=2, max_size=2)
    try:
        journal = PostgresJournal(pool)
        request = OrderRequest(token_in="SOL", token_out="USDC", amount=1.0, order_type=OrderType.MARKET)
        batch = [NewOrder(*new_order(request, time.time() * 1000)) for _ in range(orders)]
        for start in range(0, orders, 500):
            await journal.insert_orders(batch[start : start + 500])
        ids = [item.order.order_id for item in batch]
        claims: dict[str, ClaimedRun] = {}

        async def claim(order_id: str) -> None:
            claimed = await journal.claim_run(order_id)
            assert claimed is not None
            claims[order_id] = claimed

        async def check(order_id: str) -> None:
            assert await journal.assert_current(order_id, claims[order_id].epoch)

        await _time(journal.load, ids[:100])  # warm the connections and the plans
        figures = {
            "load (unfenced, before)": await _time(journal.load, ids),
            "claim_run": await _time(claim, ids),
            "may_sign (assert_current)": await _time(check, ids),
        }
        print(f"{orders} orders, one call at a time, PostgreSQL at {admin_dsn.rsplit('@', 1)[-1].rsplit('/', 1)[0]}")
        for name, samples in figures.items():
            print(
                f"  {name:28s} p50 {statistics.median(samples):6.2f} ms  p99 {_percentile(samples, 0.99):6.2f} ms  "
                f"mean {statistics.fmean(samples):6.2f} ms"
            )
    finally:
        await pool.close()
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres", help="an admin DSN on the server to use")
    parser.add_argument("--orders", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.dsn, args.orders))
