"""Pre-trade risk checks (engine.risk): USD values from pool mids, the per-order rules, the account rule."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.accounts import AccountLimits
from engine.risk import MarketView, PoolMark, assess, notional_usd, open_notional_denial

LIMITS = AccountLimits(
    rate_per_second=50,
    rate_burst=100,
    max_open_orders=1000,
    max_open_notional_usd=10_000_000,
    max_order_notional_usd=1_000_000,
    max_depth_share=0.1,
    max_streams=100,
)


def marks() -> list[PoolMark]:
    return [
        PoolMark("raydium", "SOL", "USDC", 150.0, 10_000_000.0),
        PoolMark("raydium", "USDC", "SOL", 1 / 150.0, 66_666.0),
        PoolMark("meteora", "SOL", "USDC", 151.0, 6_000_000.0),
        PoolMark("raydium", "BONK", "SOL", 2e-5 / 150, 10_000.0),  # one direction only
        PoolMark("raydium", "WIF", "SOL", 0.0, 10.0),  # a broken mark is ignored
    ]


def test_usd_prices_walk_from_the_stablecoins_through_the_deepest_pools() -> None:
    view = MarketView(marks())
    assert view.usd("USDC") == 1.0 and view.usd("USDT") == 1.0
    assert view.usd("SOL") == pytest.approx(1 / (1 / 150.0))
    assert view.usd("BONK") == pytest.approx(2e-5)  # two hops: BONK -> SOL -> USDC, the reverse of a one-way mark
    assert view.usd("WIF") is None and view.usd("JUP") is None
    assert MarketView([], {"JUP": 0.8}).usd("JUP") == 0.8
    best = view.best_pool("SOL", "USDC")
    assert best is not None and best.venue == "raydium"


def test_an_order_within_every_limit_passes_and_is_valued() -> None:
    assessment = assess("SOL", "USDC", 10, MarketView(marks()), LIMITS)
    assert assessment.passed and assessment.notional_usd == pytest.approx(1500.0)


def test_notional_and_depth_denials_carry_their_codes_limits_and_values() -> None:
    assessment = assess("SOL", "USDC", 10_000, MarketView(marks()), LIMITS)  # $1.5M, and 15 % of 10M USDC depth
    assert [d.code for d in assessment.denials] == ["max_notional", "max_depth_share"]
    notional, depth = (d.detail() for d in assessment.denials)
    assert notional["limit"] == 1_000_000 and notional["value"] == pytest.approx(1_500_000) and notional["path"] == ["amount"]
    assert depth["limit"] == 0.1 and depth["value"] == pytest.approx(0.15) and "raydium" in depth["message"]


def test_depth_alone_can_deny() -> None:
    assert assess("USDC", "SOL", 10_000, MarketView(marks()), LIMITS).passed  # 66.7 SOL of 66,666 SOL depth: 0.1 %
    assert assess("SOL", "BONK", 20, MarketView(marks()), LIMITS).passed  # no SOL->BONK pool: no depth to compare
    deep = assess("BONK", "SOL", 1e10, MarketView(marks()), LIMITS)  # worth $200k, but 1,333 SOL of a 10,000 SOL pool
    assert [d.code for d in deep.denials] == ["max_depth_share"] and deep.notional_usd == pytest.approx(200_000)


def test_an_order_that_cannot_be_valued_is_denied() -> None:
    assessment = assess("WIF", "JUP", 1, MarketView(marks()), LIMITS)
    assert [d.code for d in assessment.denials] == ["max_notional"] and assessment.notional_usd is None
    assert "cannot value WIF" in assessment.denials[0].message


def test_an_unpriced_input_is_valued_by_what_it_buys() -> None:
    view = MarketView([PoolMark("x", "NEW", "SOL", 0.5, 1000.0), PoolMark("x", "SOL", "USDC", 100.0, 1e6)])
    assert notional_usd("NEW", "SOL", 4, view) == pytest.approx(200.0)


def test_open_notional() -> None:
    assert open_notional_denial(9_000_000, 1_000_000, LIMITS) is None
    denial = open_notional_denial(9_500_000, 600_000, LIMITS)
    assert denial is not None and denial.code == "max_open_notional" and denial.value == 10_100_000


@settings(deadline=None, max_examples=100, database=None)
@given(st.floats(min_value=1e-9, max_value=1e12, allow_nan=False, allow_infinity=False))
def test_notional_is_linear_in_the_amount(amount: float) -> None:
    view = MarketView(marks())
    value = notional_usd("SOL", "USDC", amount, view)
    assert value is not None and value == pytest.approx(amount * 150.0)
    denied = {d.code for d in assess("SOL", "USDC", amount, view, LIMITS).denials}
    assert ("max_notional" in denied) == (value > LIMITS.max_order_notional_usd)
