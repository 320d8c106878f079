"""Settlement tier: the protocol against a real embedded chain (LiteSVM), real PostgreSQL and Redis,
with real simulated venues that co-sign; no Ray (the chain is called in-process, as its actor would)."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest
import redis.asyncio as aioredis

from engine.adapters.postgres import PostgresJournal, create_pool
from engine.adapters.redis_store import RedisOrders
from engine.adapters.settlement_store import PostgresSettlementStore
from engine.chain import Chain
from engine.clock import SystemClock
from engine.execution import OrderWorkflow
from engine.intake import Accepted, OrderIntake
from engine.models import OrderEvent, OrderRequest, OrderType
from engine.retry import RetryPolicy
from engine.settlement import Checkpoint, Settlement, no_checkpoint
from settlement.assembler import ChainAssembler
from settlement.embedded import EmbeddedChain
from settlement.faults import InjectedFault
from settlement.keys import Keyring
from tests.conftest import TestStores, reset_stores
from venues.simulated import METEORA, RAYDIUM, SimulatedVenue, VenueTiming

KEYS = Keyring("settlement-tests")


class Sink:
    def __init__(self) -> None:
        self.events: list[OrderEvent] = []

    async def publish(self, event: OrderEvent, epoch: int | None = None) -> None:
        self.events.append(event)


class WallClock:
    """Wall time the tests can move forward (the chain's blocks follow it)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Rig:
    """One engine's worth of settlement wiring over shared stores and one chain."""

    chain: EmbeddedChain
    pool: asyncpg.Pool
    journal: PostgresJournal
    orders: RedisOrders
    clock_offset: WallClock
    venues: dict[str, SimulatedVenue] = field(default_factory=dict)
    sink: Sink = field(default_factory=Sink)

    def store(self) -> PostgresSettlementStore:
        return PostgresSettlementStore(self.pool)

    def hold_back(self, held: list[bytes]) -> Checkpoint:
        """A checkpoint that, the first time a transaction is persisted (while ``held`` is empty), keeps its
        signed bytes in ``held`` and kills the run before it sends them."""

        async def checkpoint(step: str, order_id: str) -> None:
            if step == "persisted" and not held:
                pending = await self.store().load(order_id)
                assert pending is not None
                held.append(pending.raw)
                raise InjectedFault(step, order_id)

        return checkpoint

    def settlement(self, checkpoint: Checkpoint = no_checkpoint, chain: Chain | None = None) -> Settlement:
        used = chain or self.chain
        assembler = ChainAssembler(KEYS, self.venues, used, self.chain)
        return Settlement(used, self.store(), assembler, SystemClock(), poll_s=0.01, checkpoint=checkpoint)

    def workflow(self, checkpoint: Checkpoint = no_checkpoint, chain: Chain | None = None) -> OrderWorkflow:
        settlement = self.settlement(checkpoint, chain)
        return OrderWorkflow(
            venues=self.venues,
            sink=self.sink,
            journal=self.journal,
            active=self.orders,
            clock=SystemClock(),
            retry=RetryPolicy(max_attempts=3, base_delay_s=0.01),
            settlement=settlement,
        )

    async def submit(self, count: int, amount: float = 1.0) -> list[str]:
        intake = OrderIntake(self.journal, self.orders)
        ids = []
        for i in range(count):
            pair = ("SOL", "USDC") if i % 2 == 0 else ("USDC", "SOL")
            size = amount if i % 2 == 0 else amount * 150
            outcome = await intake.submit(
                OrderRequest(token_in=pair[0], token_out=pair[1], amount=size, order_type=OrderType.MARKET), time.time() * 1000
            )
            assert isinstance(outcome, Accepted)
            ids.append(outcome.order_id)
        return ids


async def simulated_venues(chain: EmbeddedChain, seed: int = 1) -> dict[str, SimulatedVenue]:
    """Both venues with their pools' vaults on ``chain`` (their quotes price what the vaults hold)."""
    timing = VenueTiming(quote_latency_s=0.0, swap_latency_s=(0.0, 0.0))
    venues = {
        name: SimulatedVenue(
            name, SystemClock(), random.Random(seed), timing=timing, keyring=KEYS, chain=chain, faucet=chain, refresh_s=0.02
        )
        for name in (RAYDIUM, METEORA)
    }
    for venue in venues.values():
        await venue.open()
    return venues


@pytest.fixture
async def rig(stores: TestStores) -> AsyncIterator[Rig]:
    await reset_stores(stores)
    pool = await create_pool(stores.database_url, min_size=1, max_size=8)
    client = aioredis.Redis.from_url(stores.redis_url)
    wall = WallClock()
    chain = EmbeddedChain(blockhash_ttl_s=60.0, slot_s=0.4, now=wall)
    venues = await simulated_venues(chain)
    yield Rig(chain, pool, PostgresJournal(pool), RedisOrders(client, stores.redis_prefix), wall, venues)
    for venue in venues.values():
        await venue.close()
    await client.aclose()
    await pool.close()
