"""best_split against a brute-force grid over real pools, and its edge cases."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.models import VenueName
from engine.split import Output, Split, best_split, evaluate
from venues.simulated import METEORA, RAYDIUM
from venues.simulated.market import CATALOGUE, build_pool
from venues.simulated.pools import BinnedPool, ConstantProductPool, Pool, PoolExhausted

PROPS = settings(deadline=None, max_examples=60, database=None)
GRID = 10_000  # shares 0, 1/GRID, ..., 1: 10,001 points


def spec(venue: VenueName, base: str, quote: str):
    return next(s for s in CATALOGUE if (s.venue, s.base, s.quote) == (venue, base, quote))


def output(pool: Pool, x_to_y: bool) -> Output:
    """What a venue would give for an amount, as the router sees it (a pool read, nothing mutated)."""
    return lambda amount: pool.fill(amount, x_to_y).amount_out


def alone(venue: Output, amount: float) -> float:
    try:
        return venue(amount)
    except PoolExhausted:
        return -math.inf


def brute_force(a: Output, b: Output, amount: float) -> Split:
    return max((evaluate(a, b, amount, i / GRID) for i in range(GRID + 1)), key=lambda s: s.total)


# Real pools: Raydium's constant product and Meteora's binned pool for SOL/USDC (seed 7),
# two constant-product pools a few percent apart, and two binned pools of different steps.
RAYDIUM_SOL_USDC = spec(RAYDIUM, "SOL", "USDC")
METEORA_SOL_USDC = spec(METEORA, "SOL", "USDC")


def cp_and_binned(x_to_y: bool) -> tuple[Output, Output]:
    return output(build_pool(RAYDIUM_SOL_USDC, 7), x_to_y), output(build_pool(METEORA_SOL_USDC, 7), x_to_y)


def two_cp(x_to_y: bool) -> tuple[Output, Output]:
    return (
        output(ConstantProductPool(reserve_x=60_000.0, reserve_y=9_000_000.0), x_to_y),
        output(ConstantProductPool(reserve_x=20_000.0, reserve_y=3_090_000.0, fee_bps=30.0), x_to_y),
    )


def two_binned(x_to_y: bool) -> tuple[Output, Output]:
    return (
        output(BinnedPool.uniform(150.0, 8_000_000.0, 10.0, 70), x_to_y),
        output(BinnedPool.uniform(152.0, 2_000_000.0, 25.0, 40), x_to_y),
    )


POOL_PAIRS: dict[str, Callable[[bool], tuple[Output, Output]]] = {"cp+binned": cp_and_binned, "cp+cp": two_cp, "binned+binned": two_binned}


@pytest.mark.parametrize("pools", list(POOL_PAIRS))
@pytest.mark.parametrize(
    ("x_to_y", "amount"),
    [(True, 1.0), (True, 5_000.0), (True, 20_000.0), (False, 300_000.0), (False, 1_500_000.0)],
    ids=["sell-1", "sell-5k", "sell-20k", "buy-300k", "buy-1.5m"],
)
def test_split_is_within_1_bps_of_the_brute_force_optimum(pools: str, x_to_y: bool, amount: float) -> None:
    a, b = POOL_PAIRS[pools](x_to_y)
    split = best_split(a, b, amount)
    assert math.isfinite(max(alone(a, amount), alone(b, amount))), "the table holds amounts one venue can fill alone, as the router's"
    optimum = brute_force(a, b, amount)
    assert split.total >= optimum.total * (1 - 1e-4), f"{split} vs brute force {optimum}"
    # and it is a real split of the amount: the parts add up and the outputs are the venues' own
    assert 0.0 <= split.share_a <= 1.0
    assert split.amount_a + split.amount_b == pytest.approx(amount)
    assert split.out_a == (a(split.amount_a) if split.amount_a > 0 else 0.0)
    assert split.out_b == (b(split.amount_b) if split.amount_b > 0 else 0.0)


def test_a_large_order_is_actually_split_and_a_tiny_one_is_not() -> None:
    a, b = two_cp(True)
    large = best_split(a, b, 20_000.0)
    assert 0.05 < large.share_a < 0.95
    assert large.total > max(a(20_000.0), b(20_000.0))
    tiny = best_split(a, b, 1e-3)
    assert tiny.total >= max(a(1e-3), b(1e-3))


@PROPS
@given(
    rx_a=st.floats(1.0, 1e7),
    price_a=st.floats(1e-3, 1e3),
    rx_b=st.floats(1.0, 1e7),
    price_b=st.floats(1e-3, 1e3),
    fee_a=st.floats(0.0, 100.0),
    fee_b=st.floats(0.0, 100.0),
    fraction=st.floats(1e-6, 10.0),
    x_to_y=st.booleans(),
)
def test_split_never_gives_less_than_the_best_single_venue(
    rx_a: float, price_a: float, rx_b: float, price_b: float, fee_a: float, fee_b: float, fraction: float, x_to_y: bool
) -> None:
    pool_a = ConstantProductPool(reserve_x=rx_a, reserve_y=rx_a * price_a, fee_bps=fee_a)
    pool_b = ConstantProductPool(reserve_x=rx_b, reserve_y=rx_b * price_b, fee_bps=fee_b)
    a, b = output(pool_a, x_to_y), output(pool_b, x_to_y)
    amount = fraction * (rx_a if x_to_y else rx_a * price_a)  # up to ten times the pool's input-side reserve
    split = best_split(a, b, amount)
    single = max(a(amount), b(amount))
    assert split.total >= single
    assert split.total <= a(amount) + b(amount)  # concave outputs: splitting cannot beat both venues filling it all


@PROPS
@given(
    price=st.floats(1e-3, 1e3),
    gap=st.floats(-0.05, 0.05),
    depth_a=st.floats(1e3, 1e7),
    depth_b=st.floats(1e3, 1e7),
    fraction=st.floats(1e-6, 0.9),
    x_to_y=st.booleans(),
)
def test_split_over_binned_and_cp_pools_beats_each_venue_alone(
    price: float, gap: float, depth_a: float, depth_b: float, fraction: float, x_to_y: bool
) -> None:
    binned = BinnedPool.uniform(price * (1 + gap), depth_b, 10.0, 30)
    cp = ConstantProductPool(reserve_x=depth_a / 2 / price, reserve_y=depth_a / 2)
    a, b = output(cp, x_to_y), output(binned, x_to_y)
    amount = fraction * (depth_b / 2 / price if x_to_y else depth_b / 2)  # within the binned pool's reach
    split = best_split(a, b, amount)
    assert split.total >= max(a(amount), b(amount))
    assert math.isfinite(split.total)


# --------------------------------------------------------------------------- exhaustion and zero


def exhausted(amount: float) -> float:
    raise PoolExhausted(f"pool exhausted before {amount:g}")


def capped(capacity: float, rate: float = 1.0) -> Output:
    def out(amount: float) -> float:
        if amount > capacity:
            raise PoolExhausted(f"only {capacity:g} fillable")
        return amount * rate

    return out


@pytest.mark.parametrize("exhausted_is_a", [True, False])
def test_a_venue_that_cannot_fill_anything_gets_nothing(exhausted_is_a: bool) -> None:
    fine = output(ConstantProductPool(reserve_x=1_000.0, reserve_y=150_000.0), True)
    a, b = (exhausted, fine) if exhausted_is_a else (fine, exhausted)
    split = best_split(a, b, 10.0)
    assert split.share_a == (0.0 if exhausted_is_a else 1.0)
    assert split.total == fine(10.0)


def test_exhaustion_is_minus_infinity_not_an_error() -> None:
    split = evaluate(exhausted, exhausted, 10.0, 0.5)
    assert split.out_a == split.out_b == -math.inf
    assert split.total == -math.inf
    assert best_split(exhausted, exhausted, 10.0).total == -math.inf


def test_a_venue_with_a_cap_takes_what_it_can() -> None:
    """Venue a pays more but can fill only 3 of 10: the best split gives it (about) all 3."""
    a, b = capped(3.0, rate=1.0), capped(100.0, rate=0.9)
    split = best_split(a, b, 10.0)
    optimum = brute_force(a, b, 10.0)
    assert optimum.total == pytest.approx(9.3)
    assert split.total >= optimum.total * (1 - 1e-4)
    assert split.amount_a <= 3.0


def shallow_binned_pair() -> tuple[Output, Output]:
    """Two binned SOL/USDC pools that hold about 13,300 and 6,600 SOL worth of USDC."""
    return (
        output(BinnedPool.uniform(150.0, 4_000_000.0, 10.0, 70), True),
        output(BinnedPool.uniform(152.0, 2_000_000.0, 25.0, 40), True),
    )


@pytest.mark.parametrize(
    ("venues", "amount"),
    [(lambda: (capped(6.0), capped(6.0, rate=0.99)), 10.0), (shallow_binned_pair, 15_000.0), (shallow_binned_pair, 19_000.0)],
    ids=["caps-6+6-of-10", "binned-15k", "binned-19k"],
)
def test_two_venues_that_can_only_fill_the_order_together(venues: Callable[[], tuple[Output, Output]], amount: float) -> None:
    """Each venue alone runs out of liquidity; together they fill the order. The maximum is finite.

    Each venue's output is concave where it is finite and ``-inf`` past its depth, so the
    total is concave too (on the interval of shares both can fill) and the search should
    find its top: best_split's contract is "the share that maximises total output".
    """
    a, b = venues()
    with pytest.raises(PoolExhausted):
        a(amount)
    with pytest.raises(PoolExhausted):
        b(amount)
    optimum = brute_force(a, b, amount)
    assert math.isfinite(optimum.total)
    split = best_split(a, b, amount)
    assert math.isfinite(split.total), f"best_split found no fillable split: {split}; brute force: {optimum}"
    assert split.total >= optimum.total * (1 - 1e-4)


def test_zero_amount_is_zero_and_never_asks_the_venues() -> None:
    asked: list[float] = []

    def venue(amount: float) -> float:
        asked.append(amount)
        return amount

    split = best_split(venue, venue, 0.0)
    assert (split.amount_a, split.amount_b, split.out_a, split.out_b, split.total) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert asked == []


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_a_zero_leg_is_not_priced(share: float) -> None:
    """A leg of zero input gives zero output without asking the venue (pools refuse amount 0)."""
    pool = ConstantProductPool(reserve_x=1_000.0, reserve_y=150_000.0)
    split = evaluate(output(pool, True), output(pool, True), 10.0, share)
    assert math.isfinite(split.total)
    assert split.total == output(pool, True)(10.0)
