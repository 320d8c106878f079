"""What the chain costs per order, in process: CPU per order to settle through the protocol on the
embedded chain (price the leg, build, sign as trader and venue, store, send, execute on LiteSVM, ask the
status, read the landed transaction) next to the same orders settled without a chain (the leg priced,
nothing signed or executed), and the parts of the difference.

    python -m loadtest.chain_cost [--orders 2000] [--concurrency 50]

No Ray, no PostgreSQL (an in-memory store with the same compare-and-set): this is the chain's own cost;
the engine adds one ChainNode actor round trip per batch of sends, of status reads and of transaction
reads (``python -m loadtest.bench --only capacity`` measures the engine with them).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.clock import SystemClock  # noqa: E402
from engine.models import SwapResult  # noqa: E402
from engine.settlement import LegRequest, PendingTx, Settlement  # noqa: E402
from settlement.assembler import ChainAssembler  # noqa: E402
from settlement.embedded import EmbeddedChain  # noqa: E402
from settlement.keys import Keyring  # noqa: E402
from settlement.swap_tx import assemble, swap_message  # noqa: E402
from venues.simulated import METEORA, RAYDIUM, SimulatedVenue, VenueTiming  # noqa: E402


class MemoryStore:
    """The settlement store's compare-and-set, in memory."""

    def __init__(self) -> None:
        self.rows: dict[str, PendingTx] = {}

    async def load(self, order_id: str) -> PendingTx | None:
        return self.rows.get(order_id)

    async def save(self, pending: PendingTx, replaces: str | None, epoch: int | None = None) -> bool:
        current = self.rows.get(pending.order_id)
        if (current.signature if current else None) != replaces:
            return False
        self.rows[pending.order_id] = pending
        return True


async def allowed() -> bool:
    return True


def venues(keys: Keyring) -> dict[str, SimulatedVenue]:
    timing = VenueTiming(quote_latency_s=0.0, swap_latency_s=(0.0, 0.0))
    return {n: SimulatedVenue(n, SystemClock(), random.Random(1), timing=timing, keyring=keys) for n in (RAYDIUM, METEORA)}


async def timed(orders: int, concurrency: int, one: Callable[[int], Awaitable[object]]) -> float:
    """CPU seconds per order to run ``one`` for every order, ``concurrency`` at a time."""
    started = time.process_time()
    for first in range(0, orders, concurrency):
        await asyncio.gather(*(one(i) for i in range(first, min(first + concurrency, orders))))
    return (time.process_time() - started) / orders


async def measure(orders: int, concurrency: int) -> dict[str, float]:
    keys = Keyring("chain-cost")
    pools = venues(keys)
    quote = await pools[RAYDIUM].quote("SOL", "USDC", 0.5)
    back = await pools[RAYDIUM].quote("USDC", "SOL", 75.0)
    legs: Sequence[LegRequest] = [LegRequest(quote, 0.0)]
    reverse: Sequence[LegRequest] = [LegRequest(back, 0.0)]

    async def without_chain(i: int) -> SwapResult:
        leg = (legs if i % 2 == 0 else reverse)[0].quote
        terms = await pools[leg.venue].commit_leg(f"order_{i}", leg, 0.0)
        return SwapResult(
            venue=leg.venue,
            order_id=f"order_{i}",
            tx_hash="-",
            amount_in=terms.amount_in,
            amount_out=terms.amount_out,
            execution_price=1.0,
            executed_at=0.0,
        )

    chain = EmbeddedChain()
    settlement = Settlement(chain, MemoryStore(), ChainAssembler(keys, pools, chain, chain), SystemClock(), poll_s=0.001)

    async def with_chain(i: int) -> list[SwapResult]:
        return await settlement.settle(f"order_c{i}", "local", legs if i % 2 == 0 else reverse, allowed)

    await timed(50, 10, with_chain)  # warm: accounts funded, code paths hot
    await timed(50, 10, without_chain)
    base = await timed(orders, concurrency, without_chain)
    full = await timed(orders, concurrency, with_chain)

    # the parts: building and signing (trader + venue), and LiteSVM executing the signed bytes
    trader = keys.wallet("local")
    terms = await pools[RAYDIUM].commit_leg("order_parts", quote, 0.0)
    recent = await chain.latest_blockhash()
    authority = keys.pool_authority(RAYDIUM, terms.mint_in, terms.mint_out)
    started = time.process_time()
    raws = []
    for i in range(orders):
        message = swap_message(f"order_p{i}", trader.pubkey(), [terms], recent.blockhash)
        payload = bytes(message)
        tx = assemble(message, {trader.pubkey(): trader.sign_message(payload), authority.pubkey(): authority.sign_message(payload)})
        raws.append(bytes(tx))
    sign = (time.process_time() - started) / orders
    started = time.process_time()
    for raw in raws:
        await chain.send(raw)
    execute = (time.process_time() - started) / orders
    return {"without_chain_ms": base * 1000, "with_chain_ms": full * 1000, "build_and_sign_ms": sign * 1000, "execute_ms": execute * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    figures = asyncio.run(measure(args.orders, args.concurrency))
    chain_ms = figures["with_chain_ms"] - figures["without_chain_ms"]
    print(f"{args.orders} orders, {args.concurrency} at a time, CPU per order (process time):")
    print(f"  settled without a chain (leg priced only)   {figures['without_chain_ms']:.3f} ms")
    print(f"  settled on the embedded chain (protocol)    {figures['with_chain_ms']:.3f} ms")
    print(f"  the chain's cost per order                  {chain_ms:.3f} ms")
    print(f"    of which build + sign (trader and venue)  {figures['build_and_sign_ms']:.3f} ms")
    print(f"    of which LiteSVM executing the tx         {figures['execute_ms']:.3f} ms")
    print(f"  capacity of one core on the chain path      {1000 / figures['with_chain_ms']:.0f} orders/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
