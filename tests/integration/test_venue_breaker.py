"""The venue circuit breaker in the real actors: a venue whose every quote times out is taken out of
routing (its breaker opens and its quotes are refused at once), orders route to the others and
confirm, and its state is what /readyz and metrics read (``breaker_state``)."""

from __future__ import annotations

import asyncio

import pytest
import ray

from engine.clock import Clock
from engine.errors import TransientVenueError
from engine.models import DexQuote, VenueName
from engine.ports import PoolView
from tests.integration.test_engine_actors import submit, wait_terminal
from venues.registry import VenueContext

pytestmark = pytest.mark.usefixtures("ray_local")

FLAKY = f"flaky={__name__}:flaky_venue"


class FlakyVenue:
    """Trades SOL/USDC, but every quote times out (an RPC node that stopped answering)."""

    def __init__(self, name: VenueName, clock: Clock) -> None:
        self.name = name
        self.clock = clock
        self.quotes = 0

    async def pairs(self) -> frozenset[tuple[str, str]]:
        return frozenset({("SOL", "USDC"), ("USDC", "SOL")})

    async def quote(self, token_in: str, token_out: str, amount: float) -> DexQuote:
        self.quotes += 1
        raise TransientVenueError(self.name, "quote timed out (RPC node not answering)")

    async def snapshot(self, token_in: str, token_out: str) -> PoolView | None:
        return None

    async def close(self) -> None:
        pass

    @property
    def calls(self) -> dict[str, int]:
        return {"quote": self.quotes}


async def flaky_venue(name: VenueName, context: VenueContext) -> FlakyVenue:
    return FlakyVenue(name, context.clock)


async def test_a_failing_venue_is_taken_out_of_routing_and_tried_again_after_its_cool_down(engine_factory, intake, journal) -> None:
    actors, _ = engine_factory(
        venues=["raydium", "meteora", FLAKY], venue_breaker_min_calls=4, venue_breaker_error_rate=0.5, venue_breaker_cooldown_s=5.0
    )
    flaky = actors.venues["flaky"]
    first = await submit(intake, 4, amount=0.5)  # four quotes, four faults: the breaker opens
    await wait_terminal(journal, first)
    state = ray.get(flaky.breaker_state.remote())
    assert state["venue"] == "flaky" and state["state"] == "open" and state["trips"] == 1, state
    reached = ray.get(flaky.stats.remote())["quote"]
    second = await submit(intake, 6, amount=0.5)  # routed while it is open: its quotes are refused at once
    trails = await wait_terminal(journal, first + second)
    assert all(events[-1].status.value == "confirmed" for events in trails.values())
    later = ray.get(flaky.stats.remote())["quote"]
    assert later <= reached + 1, (reached, later)  # at most one half-open trial on a slow machine
    for order_id in first + second:
        order = await journal.get(order_id)
        assert order is not None and order.routing_decision is not None
        assert order.routing_decision.venue in ("raydium", "meteora") and "flaky" in order.routing_decision.rejected
    refused = ray.get(flaky.read_many.remote([("quote", ("SOL", "USDC", 1.0))]))
    if ray.get(flaky.breaker_state.remote())["state"] == "open":
        assert "circuit open" in str(refused[0])
    await asyncio.sleep(5.2)  # the cool-down: half-open, and the next call decides
    assert ray.get(flaky.breaker_state.remote())["state"] == "half_open"
    ray.get(flaky.read_many.remote([("quote", ("SOL", "USDC", 1.0))]))
    after = ray.get(flaky.breaker_state.remote())
    assert after["state"] == "open" and after["trips"] >= 2, after
    healthy = ray.get(actors.venues["raydium"].breaker_state.remote())
    assert healthy["state"] == "closed" and healthy["errors"] == 0
    print(f"\nbreaker: {later} quotes reached the failing venue for 10 orders, all confirmed elsewhere; then {after}")
