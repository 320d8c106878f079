"""A third venue added through the registry only (``OEE_VENUES``): its actor is built from this
module's factory, the edge's pair list asks it, and an order routes to it when it quotes best."""

from __future__ import annotations

import time

import pytest
import ray

from engine.clock import Clock, SystemClock
from engine.errors import NoPoolError
from engine.intake import Accepted
from engine.models import DexQuote, OrderRequest, OrderType, VenueName
from engine.ports import PoolView
from engine.settlement import LegTerms, to_base_units
from engine.tokens import decimals_of, mint_of
from settlement.keys import Keyring, token_account
from tests.integration.test_engine_actors import submit, wait_terminal
from venues.registry import VenueContext

pytestmark = pytest.mark.usefixtures("ray_local")

TOY = f"toy={__name__}:toy_venue"


class ToyVenue:
    """A venue that trades SOL/USDC only, at a price no simulated pool matches."""

    def __init__(self, name: VenueName, clock: Clock, keyring: Keyring) -> None:
        self.name = name
        self.clock = clock
        self.key = keyring.venue_authority(name)

    async def pairs(self) -> frozenset[tuple[str, str]]:
        return frozenset({("SOL", "USDC"), ("USDC", "SOL")})

    async def quote(self, token_in: str, token_out: str, amount: float) -> DexQuote:
        if (token_in, token_out) not in await self.pairs():
            raise NoPoolError(self.name, f"no pool for {token_in}/{token_out}")
        rate = 200.0 if token_in == "SOL" else 1 / 100.0
        return DexQuote(
            venue=self.name,
            token_in=token_in,
            token_out=token_out,
            amount_in=amount,
            amount_out=amount * rate,
            price=rate,
            spot_price=rate,
            fee_bps=0.0,
            price_impact_pct=0.0,
            liquidity=1e12,
            quoted_at=self.clock.epoch_ms(),
        )

    async def snapshot(self, token_in: str, token_out: str) -> PoolView | None:
        return None

    async def commit_leg(self, order_id: str, quote: DexQuote, min_amount_out: float) -> LegTerms:
        """Its terms at its quoted rate, paid out of its own vault (a venue must settle on the chain)."""
        authority = str(self.key.pubkey())
        mint_in, mint_out = mint_of(quote.token_in), mint_of(quote.token_out)
        return LegTerms(
            venue=self.name,
            mint_in=mint_in,
            mint_out=mint_out,
            decimals_in=decimals_of(mint_in),
            decimals_out=decimals_of(mint_out),
            amount_in=to_base_units(quote.amount_in, decimals_of(mint_in)),
            amount_out=to_base_units(quote.amount_out, decimals_of(mint_out)),
            vault_in=str(token_account(authority, mint_in)),
            vault_out=str(token_account(authority, mint_out)),
            authority=authority,
        )

    async def cosign(self, order_id: str, message: bytes) -> bytes:
        return bytes(self.key.sign_message(message))

    async def close(self) -> None:
        pass


async def toy_venue(name: VenueName, context: VenueContext) -> ToyVenue:
    return ToyVenue(name, context.clock, Keyring(context.settings.chain_key_seed))


async def test_an_order_routes_to_a_registered_third_venue_that_quotes_best(engine_factory, intake, journal) -> None:
    actors, settings = engine_factory(venues=["raydium", "meteora", TOY])
    keyring = Keyring(settings.chain_key_seed)
    assert set(actors.venues) == {"raydium", "meteora", "toy"}
    assert ("SOL", "USDC") in ray.get(actors.venues["toy"].pairs.remote())

    [sol_usdc] = await submit(intake, 1)
    outcome = await intake.submit(
        OrderRequest(token_in="SOL", token_out="USDT", amount=1.0, order_type=OrderType.MARKET), time.time() * 1000
    )
    assert isinstance(outcome, Accepted)
    trails = await wait_terminal(journal, [sol_usdc, outcome.order_id])

    traded = await journal.get(sol_usdc)
    assert traded is not None and traded.routing_decision is not None
    assert traded.routing_decision.venue == "toy"
    assert {q.venue for q in traded.routing_decision.quotes} == {"raydium", "meteora", "toy"}
    landed = await actors.chain.transaction.remote(traded.tx_hash)
    assert landed is not None and landed.memo == sol_usdc and str(ToyVenue("toy", SystemClock(), keyring).key.pubkey()) in landed.signers
    elsewhere = await journal.get(outcome.order_id)  # a pair the toy does not trade routes as before
    assert elsewhere is not None and elsewhere.routing_decision is not None
    assert elsewhere.routing_decision.venue in {"raydium", "meteora"}
    assert "toy" in elsewhere.routing_decision.rejected
    assert all(events[-1].status.value == "confirmed" for events in trails.values())
