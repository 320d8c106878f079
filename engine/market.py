"""The simulated market: which venue lists which pair, with how much depth.

Both venues start from the tokens' reference prices; Meteora's pools sit a few
percent away from Raydium's (a per-pair offset between 2% and 5%, either side),
as two real venues with separate liquidity do.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from engine.models import VenueName
from engine.pools import BinnedPool, ConstantProductPool, Pool
from engine.tokens import BY_SYMBOL


@dataclass(frozen=True, slots=True)
class PoolSpec:
    venue: VenueName
    base: str
    quote: str
    depth_usd: float
    bin_step_bps: float = 10.0  # DLMM only


CATALOGUE: tuple[PoolSpec, ...] = (
    PoolSpec(VenueName.RAYDIUM, "SOL", "USDC", 20e6),
    PoolSpec(VenueName.RAYDIUM, "SOL", "USDT", 5e6),
    PoolSpec(VenueName.RAYDIUM, "BONK", "SOL", 3e6),
    PoolSpec(VenueName.RAYDIUM, "JUP", "USDC", 4e6),
    PoolSpec(VenueName.RAYDIUM, "RAY", "USDC", 3e6),
    PoolSpec(VenueName.RAYDIUM, "RAY", "SOL", 2e6),
    PoolSpec(VenueName.RAYDIUM, "WIF", "SOL", 3e6),
    PoolSpec(VenueName.RAYDIUM, "USDC", "USDT", 10e6),
    PoolSpec(VenueName.RAYDIUM, "MSOL", "SOL", 5e6),
    PoolSpec(VenueName.METEORA, "SOL", "USDC", 12e6),
    PoolSpec(VenueName.METEORA, "SOL", "USDT", 3e6),
    PoolSpec(VenueName.METEORA, "BONK", "SOL", 2e6, bin_step_bps=25.0),
    PoolSpec(VenueName.METEORA, "JUP", "SOL", 2e6),
    PoolSpec(VenueName.METEORA, "WIF", "USDC", 2e6, bin_step_bps=25.0),
    PoolSpec(VenueName.METEORA, "USDC", "USDT", 8e6, bin_step_bps=1.0),
    PoolSpec(VenueName.METEORA, "MSOL", "SOL", 3e6, bin_step_bps=2.0),
)

DLMM_BINS_EACH_SIDE = 70


def pair_key(a: str, b: str) -> frozenset[str]:
    return frozenset((a, b))


def pools_for(venue: VenueName) -> list[PoolSpec]:
    return [spec for spec in CATALOGUE if spec.venue is venue]


def venues_trading(token_in: str, token_out: str) -> list[VenueName]:
    """Venues with a pool for the pair, in either orientation."""
    key = pair_key(token_in, token_out)
    return sorted({spec.venue for spec in CATALOGUE if pair_key(spec.base, spec.quote) == key})


def venue_offset(spec: PoolSpec, seed: int) -> float:
    """Meteora's persistent offset from Raydium for a pair: 2% to 5%, sign by pair."""
    if spec.venue is VenueName.RAYDIUM:
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
    if spec.venue is VenueName.RAYDIUM:
        return ConstantProductPool(reserve_x=depth_quote / 2 / price, reserve_y=depth_quote / 2, fee_bps=25.0)
    return BinnedPool.uniform(price, depth_quote, spec.bin_step_bps, DLMM_BINS_EACH_SIDE)
