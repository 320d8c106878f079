"""The simulated venues keep their reserves on the chain: each pool's two vaults hold what the pool
holds, quotes price what the vaults hold (read back from the chain), and every price move is a
market-maker transaction, so a venue restarted on the same chain quotes what it quoted before."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from engine.clock import SystemClock
from engine.models import DexQuote
from engine.settlement import LegRequest
from engine.tokens import mint_of
from settlement.assembler import ChainAssembler
from settlement.embedded import EmbeddedChain
from tests.chain_scan import landed_per_order
from tests.settlement.conftest import KEYS
from venues.simulated import METEORA, RAYDIUM, SimulatedVenue, VenueTiming, b58encode
from venues.simulated.vaults import PoolVaults, rebalance_tx


def venue(chain: EmbeddedChain, name: str = RAYDIUM) -> SimulatedVenue:
    timing = VenueTiming(quote_latency_s=0.0, swap_latency_s=(0.0, 0.0))
    return SimulatedVenue(name, SystemClock(), random.Random(3), timing=timing, keyring=KEYS, chain=chain, faucet=chain, refresh_s=3600.0)


@pytest.fixture
async def chain() -> EmbeddedChain:
    return EmbeddedChain()


@pytest.fixture
async def raydium(chain: EmbeddedChain) -> AsyncIterator[SimulatedVenue]:
    opened = venue(chain)
    await opened.open()
    yield opened
    await opened.close()


async def held(chain: EmbeddedChain, base: str, quote: str, name: str = RAYDIUM) -> tuple[int, int]:
    vaults = PoolVaults.of(KEYS, name, base, quote)
    balances = await chain.token_balances(vaults.owner, [vaults.mint_base, vaults.mint_quote])
    return balances[vaults.mint_base], balances[vaults.mint_quote]


async def quote(v: SimulatedVenue, amount: float = 1.0) -> DexQuote:
    return await v.quote("SOL", "USDC", amount)


async def test_every_pool_is_deposited_in_its_own_vaults_at_open(chain: EmbeddedChain, raydium: SimulatedVenue) -> None:
    meteora = venue(chain, METEORA)
    await meteora.open()
    try:
        for v in (raydium, meteora):
            for live in v._pools.values():
                vaults = live.vaults
                assert vaults is not None
                want = vaults.units(*live.pool.reserves())
                got = await held(chain, live.spec.base, live.spec.quote, v.name)
                assert got == pytest.approx(want, rel=1e-9) and min(got) > 0
        # two venues' pools of the same pair are different accounts
        assert await held(chain, "SOL", "USDC", RAYDIUM) != await held(chain, "SOL", "USDC", METEORA)
    finally:
        await meteora.close()


async def test_a_quote_prices_what_the_vaults_hold(chain: EmbeddedChain, raydium: SimulatedVenue) -> None:
    before = await quote(raydium)
    vaults = PoolVaults.of(KEYS, RAYDIUM, "SOL", "USDC")
    base_units, quote_units = await held(chain, "SOL", "USDC")
    # someone else takes half of the pool's USDC out of its vault (on the chain, past the venue's model)
    recent = await chain.latest_blockhash()
    raw = rebalance_tx(vaults, KEYS.market_maker(RAYDIUM), 0, -(quote_units // 2), recent.blockhash, "test withdrawal")
    assert raw is not None and (await chain.send(raw)).signature is not None
    assert (await quote(raydium)).amount_out == before.amount_out  # not read yet

    await raydium.sync()
    after = await quote(raydium)
    assert after.amount_out == pytest.approx(before.amount_out / 2, rel=0.01)
    assert raydium._pools[frozenset(("SOL", "USDC"))].pool.reserves() == pytest.approx(
        vaults.amounts(base_units, quote_units - quote_units // 2)
    )


async def test_a_landed_swap_moves_the_vaults_by_the_leg_and_the_next_quote_prices_it(
    chain: EmbeddedChain, raydium: SimulatedVenue
) -> None:
    before = await held(chain, "SOL", "USDC")
    first = await quote(raydium, 1_000.0)
    assembler = ChainAssembler(KEYS, {RAYDIUM: raydium}, chain, chain)

    async def yes() -> bool:
        return True

    signed = await assembler.assemble("order_1700000000000_0000abcd", "local", [LegRequest(first, 0.0)], yes)
    assert (await chain.send(signed.pending.raw)).signature == signed.pending.signature
    [leg] = signed.legs
    after = await held(chain, "SOL", "USDC")
    assert after == (before[0] + leg.amount_in, before[1] - leg.amount_out)
    assert landed_per_order(chain.transactions()) == {"order_1700000000000_0000abcd": 1}

    await raydium.sync()
    live = raydium._pools[frozenset(("SOL", "USDC"))]
    assert live.pool.reserves() == pytest.approx(PoolVaults.of(KEYS, RAYDIUM, "SOL", "USDC").amounts(*after))
    assert (await quote(raydium, 1_000.0)).amount_out < first.amount_out  # the pool has less USDC now


async def test_a_price_move_is_on_the_chain_and_a_restarted_venue_quotes_the_same(chain: EmbeddedChain, raydium: SimulatedVenue) -> None:
    before = await held(chain, "SOL", "USDC")
    raydium.move_price("SOL", "USDC", -10.0)
    await raydium.written()
    after = await held(chain, "SOL", "USDC")
    assert after[0] > before[0] and after[1] < before[1]  # arbitrage sold SOL into the pool
    moved = await quote(raydium)

    restarted = venue(chain)  # a new venue process on the same chain: its model starts from the catalogue ...
    await restarted.open()
    try:
        assert await held(chain, "SOL", "USDC") == after  # ... nothing was deposited again ...
        assert (await quote(restarted)).amount_out == pytest.approx(moved.amount_out, rel=1e-9)  # ... it reads the vaults
    finally:
        await restarted.close()


async def test_a_listed_pool_gets_vaults_holding_its_reserves(chain: EmbeddedChain, raydium: SimulatedVenue) -> None:
    mint = b58encode(random.Random(5).randbytes(32))
    raydium.list_pool(mint, "SOL", reserve_base=1e6, reserve_quote=10.0)
    await raydium.written()
    vaults = PoolVaults.of(KEYS, RAYDIUM, mint, "SOL")
    assert vaults.mint_base == mint_of(mint)
    assert await held(chain, mint, "SOL") == vaults.units(1e6, 10.0)
    got = await raydium.quote("SOL", mint, 0.01)
    assert got.amount_out == pytest.approx(1e6 * 0.01 / 10.01 * (1 - 0.0025), rel=1e-3)
