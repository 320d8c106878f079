"""choose_route on hand-made quotes, and on quotes (and pool snapshots, for splitting) from a real pair of SimulatedVenues."""

from __future__ import annotations

import dataclasses
import functools
import random
from typing import TypedDict, Unpack

import pytest
from solders.pubkey import Pubkey
from solders.signature import Signature

from engine.clock import ManualClock
from engine.errors import InsufficientLiquidity, NoPoolError, NoRouteError, TransientVenueError, VenueError
from engine.models import DexQuote, RoutingDecision, VenueName
from engine.routing import choose_route
from engine.settlement import LegTerms
from engine.split import Output
from settlement.keys import Keyring
from settlement.swap_tx import assemble, swap_message
from venues.simulated import METEORA, RAYDIUM, SimulatedVenue, VenueTiming
from venues.simulated.market import CATALOGUE, pair_key, venues_trading
from venues.simulated.venue import VenueRefused

R, M = RAYDIUM, METEORA


def quote(venue: VenueName, amount_out: float, liquidity: float = 1e6, impact: float = 0.1, amount_in: float = 1.0) -> DexQuote:
    return DexQuote(
        venue=venue,
        token_in="SOL",
        token_out="USDC",
        amount_in=amount_in,
        amount_out=amount_out,
        price=amount_out / amount_in,
        spot_price=amount_out / amount_in,
        fee_bps=25.0,
        price_impact_pct=impact,
        liquidity=liquidity,
        quoted_at=1_764_000_000_000.0,
    )


def outcomes_in(order: str, **by_venue: DexQuote | VenueError) -> dict[VenueName, DexQuote | VenueError]:
    """A dict with the venues inserted in the given order ("rm" or "mr")."""
    names = {"r": R, "m": M}
    return {names[c]: by_venue[names[c]] for c in order}


# --------------------------------------------------------------------------- best output wins


def test_the_decision_records_when_it_was_made() -> None:
    outcomes = {R: quote(R, 151.0), M: quote(M, 150.0)}
    assert choose_route(outcomes, now_ms=1_764_000_000_250.5).decided_at == 1_764_000_000_250.5
    assert choose_route(outcomes).decided_at is None


@pytest.mark.parametrize("order", ["rm", "mr"])
@pytest.mark.parametrize(("winner", "loser"), [(R, M), (M, R)])
def test_higher_net_output_wins_whichever_venue(order: str, winner: VenueName, loser: VenueName) -> None:
    outcomes = outcomes_in(order, **{winner: quote(winner, 151.0, liquidity=1e3), loser: quote(loser, 150.0, liquidity=1e9)})
    decision = choose_route(outcomes)
    assert decision.venue is winner
    assert decision.rejected == {}
    assert {q.venue for q in decision.quotes} == {R, M}
    assert winner in decision.reason and loser in decision.reason
    assert decision.reason.startswith(f"{winner} gives 151 USDC vs {loser} 150")
    assert "+0.667% net of fees" in decision.reason


@pytest.mark.parametrize("order", ["rm", "mr"])
@pytest.mark.parametrize(("deeper", "shallower"), [(R, M), (M, R)])
def test_tie_in_amount_out_goes_to_the_deeper_pool(order: str, deeper: VenueName, shallower: VenueName) -> None:
    outcomes = outcomes_in(order, **{deeper: quote(deeper, 150.0, liquidity=2e6), shallower: quote(shallower, 150.0, liquidity=1e6)})
    decision = choose_route(outcomes)
    assert decision.venue is deeper
    assert decision.reason.startswith("tie at 150 USDC")
    assert f"{deeper} has deeper liquidity" in decision.reason
    assert "2e+06 vs 1e+06" in decision.reason


@pytest.mark.parametrize("order", ["rm", "mr"])
def test_outputs_within_relative_1e_9_count_as_a_tie(order: str) -> None:
    outcomes = outcomes_in(order, raydium=quote(R, 150.0 * (1 + 1e-12), liquidity=1e3), meteora=quote(M, 150.0, liquidity=1e6))
    assert choose_route(outcomes).venue is M


# --------------------------------------------------------------------------- venue errors


@pytest.mark.parametrize(
    "error_type",
    [TransientVenueError, NoPoolError, InsufficientLiquidity],
)
@pytest.mark.parametrize(("failing", "working"), [(R, M), (M, R)])
def test_one_venue_erroring_routes_to_the_other(error_type: type[VenueError], failing: VenueName, working: VenueName) -> None:
    outcomes: dict[VenueName, DexQuote | VenueError] = {
        failing: error_type(failing, "boom at the venue"),
        working: quote(working, 100.0),
    }
    decision = choose_route(outcomes)
    assert decision.venue is working
    assert decision.rejected == {failing: "boom at the venue"}
    assert [q.venue for q in decision.quotes] == [working]
    assert decision.reason.startswith(f"only {working} quoted (100 USDC)")
    assert f"{failing}: boom at the venue" in decision.reason


@pytest.mark.parametrize(
    ("raydium_error", "meteora_error", "transient"),
    [
        (TransientVenueError, TransientVenueError, True),
        (NoPoolError, NoPoolError, False),
        (NoPoolError, TransientVenueError, True),
        (InsufficientLiquidity, NoPoolError, True),
        (InsufficientLiquidity, InsufficientLiquidity, True),
    ],
)
def test_all_venues_erroring_is_no_route(raydium_error: type[VenueError], meteora_error: type[VenueError], transient: bool) -> None:
    outcomes = {R: raydium_error("raydium", "r-reason"), M: meteora_error("meteora", "m-reason")}
    with pytest.raises(NoRouteError) as info:
        choose_route(outcomes)
    assert info.value.transient is transient
    assert "raydium: r-reason" in info.value.reason
    assert "meteora: m-reason" in info.value.reason


def test_no_outcomes_is_a_permanent_no_route() -> None:
    with pytest.raises(NoRouteError, match="no venue answered") as info:
        choose_route({})
    assert info.value.transient is False


# --------------------------------------------------------------------------- price impact


@pytest.mark.parametrize(("high", "low"), [(R, M), (M, R)])
def test_quote_above_the_impact_limit_is_rejected_even_if_it_pays_more(high: VenueName, low: VenueName) -> None:
    outcomes = {high: quote(high, 500.0, impact=31.0), low: quote(low, 100.0, impact=1.0)}
    decision = choose_route(outcomes, max_price_impact_pct=30.0)
    assert decision.venue is low
    assert decision.rejected == {high: "price impact 31.00% exceeds 30%"}


def test_quote_exactly_at_the_impact_limit_is_accepted() -> None:
    decision = choose_route({R: quote(R, 100.0, impact=30.0)}, max_price_impact_pct=30.0)
    assert decision.venue is R
    assert decision.rejected == {}


@pytest.mark.parametrize(("limit", "accepted"), [(5.0, False), (10.0, True), (50.0, True)])
def test_impact_limit_is_configurable(limit: float, accepted: bool) -> None:
    outcomes = {R: quote(R, 100.0, impact=7.5)}
    if accepted:
        assert choose_route(outcomes, max_price_impact_pct=limit).venue is R
    else:
        with pytest.raises(NoRouteError, match=r"price impact 7\.50% exceeds") as info:
            choose_route(outcomes, max_price_impact_pct=limit)
        assert info.value.transient is True


def test_all_quotes_above_the_limit_and_no_pool_elsewhere_is_transient() -> None:
    outcomes: dict[VenueName, DexQuote | VenueError] = {R: quote(R, 100.0, impact=90.0), M: NoPoolError("meteora", "no pool")}
    with pytest.raises(NoRouteError) as info:
        choose_route(outcomes)
    assert info.value.transient is True


# --------------------------------------------------------------------------- real simulated venues


def venue_pair(seed: int = 7) -> dict[VenueName, SimulatedVenue]:
    clock = ManualClock()
    timing = VenueTiming(quote_latency_s=0.0, swap_latency_s=(0.0, 0.0), fault_rate=0.0)
    return {name: SimulatedVenue(name, clock, random.Random(1), timing=timing, seed=seed) for name in (R, M)}


async def test_a_venue_agrees_a_leg_after_its_latency_and_cosigns_only_that() -> None:
    """The venue prices the leg when it is sent (after the simulated swap latency), in base units, and
    co-signs a transaction only if what leaves its vault is what it agreed (within 50 bps)."""
    clock = ManualClock()
    keys = Keyring("unit")
    timing = VenueTiming(quote_latency_s=0.2, swap_latency_s=(2.5, 2.5), fault_rate=0.0)
    venue = SimulatedVenue(R, clock, random.Random(1), timing=timing, seed=7, keyring=keys)
    quoted = await venue.quote("SOL", "USDC", 1.5)
    before = clock.now()
    terms = await venue.commit_leg("order_1", quoted, quoted.amount_out * 0.99)
    assert clock.now() - before == pytest.approx(2.5)
    assert terms.amount_in == 1_500_000_000 and terms.decimals_in == 9 and terms.decimals_out == 6
    assert terms.amount_out == pytest.approx(quoted.amount_out * 1e6, rel=0.01)
    trader = keys.wallet("someone")
    blockhash = "4QjEBrJnATvydaCoPb7j4cneA5vSJNFsAYHQwRAjAjmQ"

    async def cosigned(leg: LegTerms, order_id: str = "order_1") -> bytes:
        message = swap_message(order_id, trader.pubkey(), [leg], blockhash)
        return await venue.cosign(order_id, bytes(message))

    signature = await cosigned(terms)
    message = swap_message("order_1", trader.pubkey(), [terms], blockhash)
    tx = assemble(
        message,
        {trader.pubkey(): trader.sign_message(bytes(message)), Pubkey.from_string(terms.authority): Signature.from_bytes(signature)},
    )
    assert all(tx.verify_with_results())
    greedy = dataclasses.replace(terms, amount_out=int(terms.amount_out * 1.006))
    with pytest.raises(VenueRefused):
        await cosigned(greedy)
    with pytest.raises(VenueRefused):
        await cosigned(dataclasses.replace(terms, amount_in=terms.amount_in - 1))
    with pytest.raises(VenueRefused):
        await cosigned(terms, order_id="order_2")  # nothing agreed for that order


async def quotes_from(venues: dict[VenueName, SimulatedVenue], token_in: str, token_out: str, amount: float) -> dict[VenueName, DexQuote]:
    return {name: await venue.quote(token_in, token_out, amount) for name, venue in venues.items()}


@pytest.mark.parametrize(
    ("token_in", "token_out", "amount"),
    [("SOL", "USDC", 1.0), ("SOL", "USDC", 100.0), ("SOL", "USDC", 5_000.0), ("USDC", "SOL", 150.0), ("USDC", "SOL", 500_000.0)],
)
async def test_simulated_quotes_route_to_the_max_amount_out(token_in: str, token_out: str, amount: float) -> None:
    quotes = await quotes_from(venue_pair(), token_in, token_out, amount)
    decision = choose_route(quotes)
    best = max(quotes.values(), key=lambda q: q.amount_out)
    assert decision.venue is best.venue
    other = next(q for q in quotes.values() if q is not best)
    assert best.amount_out > other.amount_out
    assert decision.reason.startswith(f"{best.venue} gives")


@pytest.mark.parametrize(("token_in", "token_out"), [("SOL", "USDC"), ("USDC", "SOL")])
async def test_simulated_quotes_net_of_the_pool_fee(token_in: str, token_out: str) -> None:
    amount = 0.01 if token_in == "SOL" else 1.5
    for q in (await quotes_from(venue_pair(), token_in, token_out, amount)).values():
        assert q.fee_bps > 0
        assert q.price == pytest.approx(q.amount_out / q.amount_in)
        assert q.amount_out == pytest.approx(amount * q.spot_price * (1 - q.fee_bps / 10_000), rel=1e-5)
        assert q.amount_out < amount * q.spot_price


@pytest.mark.parametrize("venue", [R, M])
@pytest.mark.parametrize(("token_in", "token_out", "small", "huge"), [("SOL", "USDC", 1.0, 20_000.0), ("USDC", "SOL", 150.0, 2_000_000.0)])
async def test_large_orders_move_the_price(venue: VenueName, token_in: str, token_out: str, small: float, huge: float) -> None:
    sim = venue_pair()[venue]
    q_small = await sim.quote(token_in, token_out, small)
    q_huge = await sim.quote(token_in, token_out, huge)
    assert q_huge.price_impact_pct > q_small.price_impact_pct
    assert q_huge.price < q_small.price
    assert q_small.price_impact_pct < 0.01


async def test_huge_order_past_the_impact_limit_routes_elsewhere_or_nowhere() -> None:
    quotes: dict[VenueName, DexQuote | VenueError] = {}
    for name, sim in venue_pair().items():
        try:
            quotes[name] = await sim.quote("SOL", "USDC", 50_000.0)
        except VenueError as exc:
            quotes[name] = exc
    with pytest.raises(NoRouteError) as info:
        choose_route(quotes)
    assert info.value.transient is True
    assert "price impact" in info.value.reason


SHARED_PAIRS = sorted(
    {(spec.base, spec.quote) for spec in CATALOGUE if len(venues_trading(spec.base, spec.quote)) == 2},
)


def test_shared_pairs_are_listed_in_the_same_orientation() -> None:
    assert len(SHARED_PAIRS) >= 4
    assert len({pair_key(*p) for p in SHARED_PAIRS}) == len(SHARED_PAIRS)


@pytest.mark.parametrize("seed", [7, 1, 12345])
@pytest.mark.parametrize(("base", "quote_token"), SHARED_PAIRS)
async def test_the_two_venues_price_a_shared_pair_2_to_5_percent_apart(base: str, quote_token: str, seed: int) -> None:
    quotes = await quotes_from(venue_pair(seed), base, quote_token, 1e-6)
    raydium, meteora = quotes[R].spot_price, quotes[M].spot_price
    gap = abs(meteora / raydium - 1.0)
    assert 0.02 - 1e-9 <= gap <= 0.05 + 1e-9, f"{base}/{quote_token}: {raydium} vs {meteora}"


# --------------------------------------------------------------------------- split routing over pool snapshots


class RouteOptions(TypedDict, total=False):
    """choose_route's keyword options that the split tests vary."""

    slippage_bps: int
    min_out_floor: float
    now_ms: float


async def routed_with_curves(
    token_in: str, token_out: str, amount: float, **kwargs: Unpack[RouteOptions]
) -> tuple[RoutingDecision, dict[VenueName, DexQuote], dict[VenueName, Output]]:
    """Quote and snapshot both real venues, then route with the snapshots' curves, as the workflow does."""
    venues = venue_pair()
    quotes = await quotes_from(venues, token_in, token_out, amount)
    curves: dict[VenueName, Output] = {}
    for name, venue in venues.items():
        view = await venue.snapshot(token_in, token_out)
        assert view is not None
        curves[name] = functools.partial(view.output, token_in)
    return choose_route(quotes, curves=curves, **kwargs), quotes, curves


async def test_a_large_order_is_split_across_both_venues() -> None:
    decision, quotes, curves = await routed_with_curves("USDC", "SOL", 300_000.0, now_ms=1_764_000_000_250.0)
    best_single = max(q.amount_out for q in quotes.values())
    assert len(decision.legs) == 2
    assert decision.decided_at == 1_764_000_000_250.0
    assert {leg.venue for leg in decision.legs} == {R, M}
    assert sum(leg.percent for leg in decision.legs) == pytest.approx(100.0)
    assert sum(leg.amount_in for leg in decision.legs) == pytest.approx(300_000.0)
    assert min(leg.percent for leg in decision.legs) >= 1.0
    assert decision.amount_out == pytest.approx(sum(leg.amount_out for leg in decision.legs))
    assert decision.amount_out > best_single
    for leg in decision.legs:  # each leg is priced by its own venue's pool
        assert leg.amount_out == pytest.approx(curves[leg.venue](leg.amount_in))
        assert leg.percent == pytest.approx(leg.amount_in / 300_000.0 * 100)
    assert decision.legs[0].amount_in >= decision.legs[1].amount_in
    assert decision.venue is decision.legs[0].venue
    assert "split" in decision.reason
    assert f"{decision.legs[0].percent:.1f}% {decision.legs[0].venue}" in decision.reason
    assert decision.min_amount_out == pytest.approx(decision.amount_out * (1 - 50 / 10_000))
    assert 0.0 < decision.price_impact_pct < 100.0


@pytest.mark.parametrize(("token_in", "token_out", "amount"), [("SOL", "USDC", 1.0), ("USDC", "SOL", 150.0)])
async def test_a_small_order_takes_one_venue(token_in: str, token_out: str, amount: float) -> None:
    decision, quotes, _ = await routed_with_curves(token_in, token_out, amount)
    best = max(quotes.values(), key=lambda q: q.amount_out)
    assert len(decision.legs) == 1
    (leg,) = decision.legs
    assert (leg.venue, leg.percent, leg.amount_in, leg.amount_out) == (best.venue, 100.0, amount, best.amount_out)
    assert decision.amount_out == best.amount_out
    assert "split" not in decision.reason


@pytest.mark.parametrize("slippage_bps", [0, 50, 300])
@pytest.mark.parametrize(("token_in", "token_out", "amount"), [("SOL", "USDC", 1.0), ("USDC", "SOL", 300_000.0)], ids=["single", "split"])
async def test_min_amount_out_is_the_output_less_slippage(token_in: str, token_out: str, amount: float, slippage_bps: int) -> None:
    decision, _, _ = await routed_with_curves(token_in, token_out, amount, slippage_bps=slippage_bps)
    assert decision.min_amount_out == pytest.approx(decision.amount_out * (1 - slippage_bps / 10_000), rel=1e-12)


@pytest.mark.parametrize(("token_in", "token_out", "amount"), [("SOL", "USDC", 1.0), ("USDC", "SOL", 300_000.0)], ids=["single", "split"])
async def test_min_amount_out_is_at_least_the_floor(token_in: str, token_out: str, amount: float) -> None:
    plain, _, _ = await routed_with_curves(token_in, token_out, amount)
    above = plain.amount_out * 0.999  # a limit tighter than the 50 bps slippage allowance
    floored, _, _ = await routed_with_curves(token_in, token_out, amount, min_out_floor=above)
    assert floored.min_amount_out == above
    assert floored.legs == plain.legs
    below = plain.amount_out * 0.9  # a loose limit changes nothing
    loose, _, _ = await routed_with_curves(token_in, token_out, amount, min_out_floor=below)
    assert loose.min_amount_out == plain.min_amount_out


def test_without_curves_a_large_order_is_never_split() -> None:
    decision = choose_route({R: quote(R, 150.0, amount_in=1.0), M: quote(M, 149.0, amount_in=1.0)})
    assert len(decision.legs) == 1
    assert decision.legs[0].percent == 100.0
    assert decision.min_amount_out == pytest.approx(150.0 * 0.995)


def test_a_split_gaining_nothing_is_not_used() -> None:
    """Linear venues (no price impact): splitting cannot beat the better one alone."""
    curves: dict[VenueName, Output] = {R: lambda x: 150.0 * x, M: lambda x: 149.0 * x}
    decision = choose_route({R: quote(R, 1_500.0, amount_in=10.0), M: quote(M, 1_490.0, amount_in=10.0)}, curves=curves)
    assert [(leg.venue, leg.percent) for leg in decision.legs] == [(R, 100.0)]


def test_a_split_needs_curves_for_both_venues() -> None:
    venues = {R: lambda x: 150.0 * x / (1 + x / 100), M: lambda x: 150.0 * x / (1 + x / 100)}
    outcomes = {R: quote(R, 150.0 * 50 / 1.5, amount_in=50.0), M: quote(M, 150.0 * 50 / 1.5 * 0.999, amount_in=50.0)}
    assert len(choose_route(outcomes, curves=venues).legs) == 2
    assert len(choose_route(outcomes, curves={R: venues[R]}).legs) == 1
    assert len(choose_route(outcomes, curves={M: venues[M]}).legs) == 1
