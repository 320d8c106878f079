"""The simulated market: which venue lists which pair, with how much depth.

Both venues start from the tokens' reference prices; Meteora's pools sit a few
percent away from Raydium's (a per-pair offset between 2% and 5%, either side),
as two real venues with separate liquidity do.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from engine.models import VenueName
from engine.tokens import BY_SYMBOL
from venues.simulated.pools import BinnedPool, ConstantProductPool, Pool

RAYDIUM: VenueName = "raydium"
METEORA: VenueName = "meteora"


class Model(StrEnum):
    CONSTANT_PRODUCT = "constant_product"  # Raydium's AMM v4
    BINNED = "binned"  # Meteora's DLMM


@dataclass(frozen=True, slots=True)
class Profile:
    """How a simulated venue prices: its pool model, and whether its pools sit at the reference price
    (the other venues' pools are offset from it, as separate liquidity is)."""

    model: Model
    at_reference: bool


PROFILES: dict[VenueName, Profile] = {
    RAYDIUM: Profile(Model.CONSTANT_PRODUCT, at_reference=True),
    METEORA: Profile(Model.BINNED, at_reference=False),
}


@dataclass(frozen=True, slots=True)
class PoolSpec:
    venue: VenueName
    base: str
    quote: str
    depth_usd: float
    bin_step_bps: float = 10.0  # DLMM only


CATALOGUE: tuple[PoolSpec, ...] = (
    PoolSpec(RAYDIUM, "SOL", "USDC", 20e6),
    PoolSpec(RAYDIUM, "SOL", "USDT", 5e6),
    PoolSpec(RAYDIUM, "BONK", "SOL", 3e6),
    PoolSpec(RAYDIUM, "JUP", "USDC", 4e6),
    PoolSpec(RAYDIUM, "RAY", "USDC", 3e6),
    PoolSpec(RAYDIUM, "RAY", "SOL", 2e6),
    PoolSpec(RAYDIUM, "WIF", "SOL", 3e6),
    PoolSpec(RAYDIUM, "USDC", "USDT", 10e6),
    PoolSpec(RAYDIUM, "MSOL", "SOL", 5e6),
    PoolSpec(METEORA, "SOL", "USDC", 12e6),
    PoolSpec(METEORA, "SOL", "USDT", 3e6),
    PoolSpec(METEORA, "BONK", "SOL", 2e6, bin_step_bps=25.0),
    PoolSpec(METEORA, "JUP", "SOL", 2e6),
    PoolSpec(METEORA, "WIF", "USDC", 2e6, bin_step_bps=25.0),
    PoolSpec(METEORA, "USDC", "USDT", 8e6, bin_step_bps=1.0),
    PoolSpec(METEORA, "MSOL", "SOL", 3e6, bin_step_bps=2.0),
)

DLMM_BINS_EACH_SIDE = 70


def pair_key(a: str, b: str) -> frozenset[str]:
    return frozenset((a, b))


def pools_for(venue: VenueName) -> list[PoolSpec]:
    return [spec for spec in CATALOGUE if spec.venue == venue]


def catalogue_pairs() -> frozenset[tuple[str, str]]:
    """Every ``(tokenIn, tokenOut)`` some simulated venue trades at start, both orientations."""
    return frozenset(pair for spec in CATALOGUE for pair in ((spec.base, spec.quote), (spec.quote, spec.base)))


def venues_trading(token_in: str, token_out: str) -> list[VenueName]:
    """Venues with a pool for the pair, in either orientation."""
    key = pair_key(token_in, token_out)
    return sorted({spec.venue for spec in CATALOGUE if pair_key(spec.base, spec.quote) == key})


def venue_offset(spec: PoolSpec, seed: int) -> float:
    """A pool's persistent offset from the reference venue's for its pair: 2% to 5%, sign by pair."""
    if PROFILES[spec.venue].at_reference:
        return 0.0
    rng = random.Random(f"{seed}:{spec.base}/{spec.quote}")
    return rng.uniform(0.02, 0.05) * rng.choice((-1.0, 1.0))


def reference_price(spec: PoolSpec, seed: int) -> float:
    """The price (quote per base) the venue's pool reverts to."""
    fair = BY_SYMBOL[spec.base].reference_usd / BY_SYMBOL[spec.quote].reference_usd
    return fair * (1.0 + venue_offset(spec, seed))


def build_pool(spec: PoolSpec, seed: int) -> Pool:
    price = reference_price(spec, seed)
    depth_quote = spec.depth_usd / BY_SYMBOL[spec.quote].reference_usd
    if PROFILES[spec.venue].model is Model.CONSTANT_PRODUCT:
        return ConstantProductPool(reserve_x=depth_quote / 2 / price, reserve_y=depth_quote / 2, fee_bps=25.0)
    return BinnedPool.uniform(price, depth_quote, spec.bin_step_bps, DLMM_BINS_EACH_SIDE)
