"""The simulated venues: Raydium as a constant-product pool, Meteora as a binned (DLMM-style) pool,
their swaps recorded in a PostgreSQL ledger. :func:`raydium` and :func:`meteora` are their factories
(see :mod:`venues.registry`)."""

from __future__ import annotations

import random

from engine.adapters.postgres import create_pool
from engine.models import VenueName
from settlement.keys import Keyring
from venues.registry import VenueContext
from venues.simulated.ledger import InMemoryLedger, PostgresLedger, SwapLedger
from venues.simulated.market import METEORA, PROFILES, RAYDIUM, Model, Profile
from venues.simulated.venue import PoolSnapshot, SimulatedVenue, VenueTiming, b58encode, venue_timing

__all__ = [
    "METEORA",
    "PROFILES",
    "RAYDIUM",
    "InMemoryLedger",
    "Model",
    "PoolSnapshot",
    "PostgresLedger",
    "Profile",
    "SimulatedVenue",
    "SwapLedger",
    "VenueTiming",
    "b58encode",
    "meteora",
    "raydium",
    "venue_timing",
]


async def simulated(name: VenueName, context: VenueContext, profile: Profile) -> SimulatedVenue:
    """A simulated venue named ``name``, its ledger in the engine's PostgreSQL (opened now, not mid-swap)."""
    pool = await create_pool(context.database_url, min_size=4, max_size=4)
    seed = context.settings.sim_seed
    return SimulatedVenue(
        name=name,
        clock=context.clock,
        rng=random.Random(f"{seed}:{name}"),
        ledger=PostgresLedger(pool, owns_pool=True),
        timing=venue_timing(context.settings),
        seed=seed,
        profile=profile,
        keyring=Keyring(context.settings.chain_key_seed),
    )


async def raydium(name: VenueName, context: VenueContext) -> SimulatedVenue:
    return await simulated(name, context, PROFILES[RAYDIUM])


async def meteora(name: VenueName, context: VenueContext) -> SimulatedVenue:
    return await simulated(name, context, PROFILES[METEORA])
