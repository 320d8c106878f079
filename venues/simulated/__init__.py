"""The simulated venues: Raydium as a constant-product pool, Meteora as a binned (DLMM-style) pool,
settling on the chain from their vaults. :func:`raydium` and :func:`meteora` are their factories
(see :mod:`venues.registry`)."""

from __future__ import annotations

import random

from engine.models import VenueName
from settlement.keys import Keyring
from venues.registry import VenueContext
from venues.simulated.market import METEORA, PROFILES, RAYDIUM, Model, Profile
from venues.simulated.venue import PoolSnapshot, SimulatedVenue, VenueTiming, b58encode, venue_timing

__all__ = [
    "METEORA",
    "PROFILES",
    "RAYDIUM",
    "Model",
    "PoolSnapshot",
    "Profile",
    "SimulatedVenue",
    "VenueTiming",
    "b58encode",
    "meteora",
    "raydium",
    "venue_timing",
]


async def simulated(name: VenueName, context: VenueContext, profile: Profile) -> SimulatedVenue:
    """A simulated venue named ``name``, holding its pools' authorities, its reserves in vaults on the
    context's chain (when it has one)."""
    seed = context.settings.sim_seed
    venue = SimulatedVenue(
        name=name,
        clock=context.clock,
        rng=random.Random(f"{seed}:{name}"),
        timing=venue_timing(context.settings),
        seed=seed,
        profile=profile,
        keyring=Keyring(context.settings.chain_key_seed),
        chain=context.chain,
        faucet=context.faucet,
        refresh_s=context.settings.vault_refresh_ms / 1000,
    )
    await venue.open()
    return venue


async def raydium(name: VenueName, context: VenueContext) -> SimulatedVenue:
    return await simulated(name, context, PROFILES[RAYDIUM])


async def meteora(name: VenueName, context: VenueContext) -> SimulatedVenue:
    return await simulated(name, context, PROFILES[METEORA])
