"""A one-leg order's venue agrees the leg and co-signs the transaction in one call (what its actor offers):
the assembler builds the same bytes the venue signed, asks nothing more, and the transaction lands. A
co-signature that does not match is asked for again, never sent."""

from __future__ import annotations

import random

from engine.clock import SystemClock
from engine.models import DexQuote
from engine.settlement import LegRequest, LegTerms
from settlement.assembler import ChainAssembler, commit_signed
from settlement.embedded import EmbeddedChain
from tests.chain_scan import landed_per_order
from tests.settlement.conftest import KEYS
from venues.simulated import RAYDIUM, SimulatedVenue, VenueTiming

ORDER = "order_1700000000000_00000f01"


class OneCall:
    """A venue seen through its actor: ``commit_signed`` beside ``commit_leg`` and ``cosign``."""

    def __init__(self, inner: SimulatedVenue, spoil: bool = False) -> None:
        self.inner = inner
        self.spoil = spoil
        self.calls: list[str] = []

    async def commit_leg(self, order_id: str, quote: DexQuote, min_amount_out: float) -> LegTerms:
        self.calls.append("commit_leg")
        return await self.inner.commit_leg(order_id, quote, min_amount_out)

    async def cosign(self, order_id: str, message: bytes) -> bytes:
        self.calls.append("cosign")
        return await self.inner.cosign(order_id, message)

    async def commit_signed(self, order_id: str, quote: DexQuote, minimum: float, trader: str, blockhash: str) -> tuple[LegTerms, bytes]:
        self.calls.append("commit_signed")
        terms, signature = await commit_signed(self.inner, order_id, LegRequest(quote, minimum), trader, blockhash)
        return terms, bytes(64) if self.spoil else signature


async def settle_one(spoil: bool) -> tuple[OneCall, EmbeddedChain, str]:
    chain = EmbeddedChain()
    timing = VenueTiming(quote_latency_s=0.0, swap_latency_s=(0.0, 0.0))
    inner = SimulatedVenue(
        RAYDIUM, SystemClock(), random.Random(2), timing=timing, keyring=KEYS, chain=chain, faucet=chain, refresh_s=3600.0
    )
    await inner.open()
    venue = OneCall(inner, spoil)
    assembler = ChainAssembler(KEYS, {RAYDIUM: venue}, chain, chain)

    async def yes() -> bool:
        return True

    quote = await inner.quote("SOL", "USDC", 2.0)
    signed = await assembler.assemble(ORDER, "local", [LegRequest(quote, 0.0)], yes)
    sent = await chain.send(signed.pending.raw)
    await inner.close()
    assert sent.signature == signed.pending.signature
    return venue, chain, signed.pending.signature


async def test_one_call_agrees_and_cosigns_and_the_transaction_lands() -> None:
    venue, chain, signature = await settle_one(spoil=False)
    assert venue.calls == ["commit_signed"]  # the assembler asked for nothing else
    landed = await chain.transaction(signature)
    assert landed is not None and landed.error is None and landed.memo == ORDER
    assert landed_per_order(chain.transactions()) == {ORDER: 1}


async def test_a_co_signature_that_does_not_match_is_asked_again() -> None:
    venue, chain, signature = await settle_one(spoil=True)
    assert venue.calls == ["commit_signed", "cosign"]
    landed = await chain.transaction(signature)
    assert landed is not None and landed.error is None
