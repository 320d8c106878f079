"""The venue registry: names to factories. Adding a venue is a module with a factory and one line here
(or, without touching this file, ``OEE_VENUES=raydium,meteora,name=package.module:factory``).

A factory is ``async def factory(name, context) -> Venue``; it runs inside the venue's actor, so it
may open connections. Factories are named by import path, so any Ray worker can build any venue.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from engine.chain import Chain
from engine.clock import Clock
from engine.models import VenueName
from engine.ports import Venue
from engine.settings import Settings
from engine.settlement import Faucet

BUILT_IN: dict[VenueName, str] = {
    "raydium": "venues.simulated:raydium",
    "meteora": "venues.simulated:meteora",
}


@dataclass(frozen=True)
class VenueContext:
    """What a factory may use to build its venue."""

    settings: Settings
    database_url: str
    clock: Clock
    chain: Chain | None = None
    """The chain swaps settle on (a venue keeps its reserves there); None: no chain (tests of routing)."""
    faucet: Faucet | None = None
    """Funds new accounts on a development chain; None on a real cluster."""


VenueFactory = Callable[[VenueName, VenueContext], Awaitable[Venue]]


class UnknownVenue(LookupError):
    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        self.spec = spec

    def __str__(self) -> str:
        return f"unknown venue {self.spec!r}: name a built-in one ({', '.join(BUILT_IN)}) or give name=package.module:factory"


@dataclass(frozen=True)
class VenueSpec:
    """A configured venue: its name and the import path of its factory."""

    name: VenueName
    factory_path: str

    def factory(self) -> VenueFactory:
        module, _, attribute = self.factory_path.partition(":")
        found: VenueFactory = getattr(importlib.import_module(module), attribute)
        return found


def parse_spec(spec: str) -> VenueSpec:
    """``raydium`` (a built-in name) or ``name=package.module:factory``."""
    name, sep, path = spec.strip().partition("=")
    name = name.strip().lower()
    if not sep:
        if name not in BUILT_IN:
            raise UnknownVenue(spec)
        return VenueSpec(name, BUILT_IN[name])
    module, colon, attribute = path.strip().partition(":")
    if not name or not colon or not module or not attribute:
        raise UnknownVenue(spec)
    return VenueSpec(name, f"{module}:{attribute}")


def configured(settings: Settings) -> list[VenueSpec]:
    """The venues the engine runs, in the order the settings list them."""
    return [parse_spec(spec) for spec in settings.venues]
