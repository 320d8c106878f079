"""Choosing a venue from the quotes: a pure function of what came back."""

from __future__ import annotations

import math
from collections.abc import Mapping

from engine.errors import NoPoolError, NoRouteError, VenueError
from engine.models import DexQuote, RoutingDecision, VenueName


def _fmt(amount: float) -> str:
    return f"{amount:,.6g}"


def choose_route(
    outcomes: Mapping[VenueName, DexQuote | VenueError],
    max_price_impact_pct: float = 30.0,
) -> RoutingDecision:
    """Pick the quote with the higher net output; on a tie, the deeper pool.

    Quotes whose price impact exceeds ``max_price_impact_pct`` are rejected: filling
    them would hand most of the order to the pool. Raises :class:`NoRouteError` when
    nothing usable is left; it is transient unless every venue lacks a pool.
    """
    quotes: list[DexQuote] = []
    rejected: dict[str, str] = {}
    transient = False
    for venue, outcome in sorted(outcomes.items()):
        if isinstance(outcome, VenueError):
            rejected[venue.value] = outcome.reason
            transient = transient or not isinstance(outcome, NoPoolError)
        elif outcome.price_impact_pct > max_price_impact_pct:
            rejected[venue.value] = f"price impact {outcome.price_impact_pct:.2f}% exceeds {max_price_impact_pct:g}%"
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
    if not others:
        reason = f"only {best.venue.value} quoted ({_fmt(best.amount_out)} {best.token_out})"
        if rejected:
            reason += "; " + "; ".join(f"{v}: {why}" for v, why in rejected.items())
    else:
        runner_up = max(others, key=lambda q: q.amount_out)
        if math.isclose(runner_up.amount_out, best.amount_out, rel_tol=1e-9):
            reason = (
                f"tie at {_fmt(best.amount_out)} {best.token_out}; {best.venue.value} has deeper liquidity "
                f"({_fmt(best.liquidity)} vs {_fmt(runner_up.liquidity)} {best.token_out})"
            )
        else:
            edge = (best.amount_out / runner_up.amount_out - 1.0) * 100.0
            reason = (
                f"{best.venue.value} gives {_fmt(best.amount_out)} {best.token_out} vs "
                f"{runner_up.venue.value} {_fmt(runner_up.amount_out)} (+{edge:.3f}% net of fees)"
            )
    return RoutingDecision(venue=best.venue, reason=reason, quotes=quotes, rejected=rejected)
