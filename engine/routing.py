"""Choosing a venue from the quotes: a pure function of what came back."""

from __future__ import annotations

import math
from collections.abc import Mapping

from engine.errors import NoPoolError, NoRouteError, VenueError
from engine.models import DexQuote, RouteLeg, RoutingDecision, VenueName
from engine.split import Output, Split, best_split


def _fmt(amount: float) -> str:
    return f"{amount:,.6g}"


MIN_LEG_SHARE = 0.01
"""A split whose smaller leg is under 1% of the order is not worth a second transaction."""
SPLIT_MIN_GAIN = 1e-6
"""A split must beat the best single venue by more than this (relative) to be used."""
SPLIT_MIN_IMPACT_PCT = 0.01
"""Below this price impact a split cannot gain even 1 bps: skip the search (it costs CPU per order)."""


def choose_route(
    outcomes: Mapping[VenueName, DexQuote | VenueError],
    max_price_impact_pct: float = 30.0,
    *,
    curves: Mapping[VenueName, Output] | None = None,
    slippage_bps: int = 50,
    min_out_floor: float = 0.0,
    now_ms: float | None = None,
) -> RoutingDecision:
    """Pick the quote with the higher net output; on a tie, the deeper pool.

    With ``curves`` (each venue's output as a function of input, from its pool state),
    the order is split across the two best venues when that gives more than either
    alone. Quotes whose price impact exceeds ``max_price_impact_pct`` are rejected:
    filling them would hand most of the order to the pool. Raises :class:`NoRouteError`
    when nothing usable is left; it is transient unless every venue lacks a pool.
    The decision carries ``min_amount_out``: the quote less ``slippage_bps``, and at
    least ``min_out_floor`` (a LIMIT order's limit), and ``decided_at``: ``now_ms``, the caller's clock.
    """
    quotes: list[DexQuote] = []
    too_deep: list[DexQuote] = []  # too much impact for the whole order, but maybe fine for a share of it
    rejected: dict[str, str] = {}
    transient = False
    for venue, outcome in sorted(outcomes.items()):
        if isinstance(outcome, VenueError):
            rejected[venue] = outcome.reason
            transient = transient or not isinstance(outcome, NoPoolError)
        elif outcome.price_impact_pct > max_price_impact_pct:
            rejected[venue] = f"price impact {outcome.price_impact_pct:.2f}% exceeds {max_price_impact_pct:g}%"
            too_deep.append(outcome)
            transient = True
        else:
            quotes.append(outcome)
    if not quotes:
        detail = "; ".join(f"{venue}: {why}" for venue, why in rejected.items()) or "no venue answered"
        raise NoRouteError(f"no usable quote ({detail})", transient=transient)

    best = quotes[0]
    for candidate in quotes[1:]:
        if math.isclose(candidate.amount_out, best.amount_out, rel_tol=1e-9):
            if candidate.liquidity > best.liquidity:
                best = candidate
        elif candidate.amount_out > best.amount_out:
            best = candidate

    others = [q for q in quotes if q is not best]
    slip = 1.0 - slippage_bps / 10_000
    partners = others + too_deep
    if partners and curves is not None and best.venue in curves and best.price_impact_pct >= SPLIT_MIN_IMPACT_PCT:
        runner_up = max(partners, key=lambda q: q.amount_out)
        if runner_up.venue in curves:
            split = best_split(curves[best.venue], curves[runner_up.venue], best.amount_in)
            smaller = min(split.share_a, 1.0 - split.share_a)
            if smaller >= MIN_LEG_SHARE and split.total > best.amount_out * (1.0 + SPLIT_MIN_GAIN):
                rejected.pop(runner_up.venue, None)  # its share is within bounds
                return _split_decision(best, runner_up, split, [*quotes, *too_deep], rejected, slip, min_out_floor, now_ms)
    if not others:
        reason = f"only {best.venue} quoted ({_fmt(best.amount_out)} {best.token_out})"
        if rejected:
            reason += "; " + "; ".join(f"{v}: {why}" for v, why in rejected.items())
    else:
        runner_up = max(others, key=lambda q: q.amount_out)
        if math.isclose(runner_up.amount_out, best.amount_out, rel_tol=1e-9):
            reason = (
                f"tie at {_fmt(best.amount_out)} {best.token_out}; {best.venue} has deeper liquidity "
                f"({_fmt(best.liquidity)} vs {_fmt(runner_up.liquidity)} {best.token_out})"
            )
        else:
            edge = (best.amount_out / runner_up.amount_out - 1.0) * 100.0
            reason = (
                f"{best.venue} gives {_fmt(best.amount_out)} {best.token_out} vs "
                f"{runner_up.venue} {_fmt(runner_up.amount_out)} (+{edge:.3f}% net of fees)"
            )
    return RoutingDecision(
        venue=best.venue,
        reason=reason,
        quotes=quotes,
        rejected=rejected,
        legs=[RouteLeg(venue=best.venue, amount_in=best.amount_in, amount_out=best.amount_out, percent=100.0)],
        amount_out=best.amount_out,
        price_impact_pct=best.price_impact_pct,
        min_amount_out=max(best.amount_out * slip, min_out_floor),
        decided_at=now_ms,
    )


def _split_decision(
    a: DexQuote,
    b: DexQuote,
    split: Split,
    quotes: list[DexQuote],
    rejected: dict[str, str],
    slip: float,
    floor: float,
    now_ms: float | None,
) -> RoutingDecision:
    amount = a.amount_in
    legs = [
        RouteLeg(venue=a.venue, amount_in=split.amount_a, amount_out=split.out_a, percent=split.share_a * 100),
        RouteLeg(venue=b.venue, amount_in=split.amount_b, amount_out=split.out_b, percent=(1 - split.share_a) * 100),
    ]
    legs.sort(key=lambda leg: -leg.amount_in)
    best_spot_net = max(q.spot_price * (1 - q.fee_bps / 10_000) for q in (a, b))
    impact = max(0.0, (1.0 - (split.total / amount) / best_spot_net) * 100) if best_spot_net > 0 else 0.0
    gain = (split.total / a.amount_out - 1.0) * 100
    reason = (
        f"split {legs[0].percent:.1f}% {legs[0].venue} / {legs[1].percent:.1f}% {legs[1].venue} gives "
        f"{_fmt(split.total)} {a.token_out} vs {_fmt(a.amount_out)} on {a.venue} alone (+{gain:.3f}%)"
    )
    return RoutingDecision(
        venue=legs[0].venue,
        reason=reason,
        quotes=quotes,
        rejected=rejected,
        legs=legs,
        amount_out=split.total,
        price_impact_pct=impact,
        min_amount_out=max(split.total * slip, floor),
        decided_at=now_ms,
    )
