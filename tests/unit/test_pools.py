"""Pool math: known values, and properties of both pool models."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from venues.simulated.pools import BinnedPool, ConstantProductPool, PoolExhausted

PROPS = settings(deadline=None, max_examples=60, database=None)

BIN_STEP_BPS = 10.0
BINS_EACH_SIDE = 20
PRICE = 150.0
DEPTH_Y = 1_000_000.0


def cp_pool(fee_bps: float = 25.0) -> ConstantProductPool:
    return ConstantProductPool(reserve_x=1_000.0, reserve_y=150_000.0, fee_bps=fee_bps)


def binned_pool(**fees: float) -> BinnedPool:
    return BinnedPool.uniform(PRICE, DEPTH_Y, BIN_STEP_BPS, BINS_EACH_SIDE, **fees)


def binned_capacity_in(pool: BinnedPool, x_to_y: bool) -> float:
    """The largest input (before fee) the pool can fill in this direction."""
    total = 0.0
    for i, (x, y) in pool.bins.items():
        p = pool.price_of(i)
        if x_to_y and i <= pool.active:
            total += y / p
        elif not x_to_y and i >= pool.active:
            total += x * p
    return total / (1.0 - pool.fee_bps() / 10_000)


def output_depth(pool: ConstantProductPool | BinnedPool, x_to_y: bool) -> float:
    if isinstance(pool, ConstantProductPool):
        return pool.reserve_y if x_to_y else pool.reserve_x
    return sum(y if x_to_y else x for i, (x, y) in pool.bins.items() if (i <= pool.active if x_to_y else i >= pool.active))


def snapshot(pool: ConstantProductPool | BinnedPool) -> object:
    if isinstance(pool, ConstantProductPool):
        return (pool.reserve_x, pool.reserve_y, pool.fee_bps)
    return (copy.deepcopy(pool.bins), pool.active, pool.volatility)


directions = st.booleans()
# A share of what the pool can take in the given direction (kept away from exhaustion).
shares = st.floats(min_value=1e-7, max_value=0.9)
growths = st.floats(min_value=1.01, max_value=5.0)


def cp_amount(pool: ConstantProductPool, x_to_y: bool, share: float) -> float:
    return share * (pool.reserve_x if x_to_y else pool.reserve_y) * 10


def binned_amount(pool: BinnedPool, x_to_y: bool, share: float) -> float:
    return share * binned_capacity_in(pool, x_to_y)


# --------------------------------------------------------------------------- known values


@pytest.mark.parametrize(
    ("reserve_x", "reserve_y", "fee_bps", "amount", "x_to_y", "expected_out"),
    [
        (1_000.0, 1_000.0, 0.0, 100.0, True, 1_000.0 * 100.0 / 1_100.0),
        (1_000.0, 1_000.0, 30.0, 100.0, True, 1_000.0 * 99.7 / 1_099.7),
        (1_000.0, 150_000.0, 25.0, 1.0, True, 150_000.0 * 0.9975 / 1_000.9975),
        (1_000.0, 150_000.0, 25.0, 150.0, False, 1_000.0 * 149.625 / 150_149.625),
        (10.0, 20.0, 100.0, 10.0, False, 10.0 * 9.9 / 29.9),
    ],
)
def test_constant_product_known_outputs(
    reserve_x: float, reserve_y: float, fee_bps: float, amount: float, x_to_y: bool, expected_out: float
) -> None:
    fill = ConstantProductPool(reserve_x, reserve_y, fee_bps).fill(amount, x_to_y)
    assert fill.amount_out == pytest.approx(expected_out, rel=1e-12)
    assert fill.fee_bps == fee_bps
    assert fill.spot_price == pytest.approx(reserve_y / reserve_x if x_to_y else reserve_x / reserve_y)
    assert fill.liquidity_out == (reserve_y if x_to_y else reserve_x)


@pytest.mark.parametrize("x_to_y", [True, False])
def test_binned_trade_inside_the_active_bin_is_at_the_bin_price_less_fee(x_to_y: bool) -> None:
    pool = binned_pool()
    amount = 10.0 if x_to_y else 1_500.0
    fill = pool.fill(amount, x_to_y)
    after_fee = amount * (1 - 20.0 / 10_000)
    expected = after_fee * PRICE if x_to_y else after_fee / PRICE
    assert fill.amount_out == pytest.approx(expected, rel=1e-12)
    assert fill.price_impact_pct == pytest.approx(0.0, abs=1e-9)
    assert fill.fee_bps == 20.0


@pytest.mark.parametrize("amount", [0.0, -1.0])
@pytest.mark.parametrize("make", [cp_pool, binned_pool], ids=["cp", "binned"])
def test_non_positive_amount_is_refused(make, amount: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        make().fill(amount, True)


# --------------------------------------------------------------------------- output bounds and monotonicity


@PROPS
@given(x_to_y=directions, share=shares)
def test_cp_output_below_output_reserve(x_to_y: bool, share: float) -> None:
    pool = cp_pool()
    fill = pool.fill(cp_amount(pool, x_to_y, share), x_to_y)
    assert 0 < fill.amount_out < output_depth(pool, x_to_y)


@PROPS
@given(x_to_y=directions, share=shares)
def test_binned_output_below_liquidity(x_to_y: bool, share: float) -> None:
    pool = binned_pool()
    fill = pool.fill(binned_amount(pool, x_to_y, share), x_to_y)
    assert 0 < fill.amount_out < output_depth(pool, x_to_y)
    assert fill.liquidity_out == pytest.approx(output_depth(pool, x_to_y))


@pytest.mark.parametrize("kind", ["cp", "binned"])
@PROPS
@given(x_to_y=directions, share=st.floats(min_value=1e-6, max_value=0.15), growth=growths)
def test_output_strictly_increases_with_amount(kind: str, x_to_y: bool, share: float, growth: float) -> None:
    pool = cp_pool() if kind == "cp" else binned_pool()
    small = cp_amount(pool, x_to_y, share) if isinstance(pool, ConstantProductPool) else binned_amount(pool, x_to_y, share)
    assert pool.fill(small * growth, x_to_y).amount_out > pool.fill(small, x_to_y).amount_out


@PROPS
@given(x_to_y=directions, share=st.floats(min_value=1e-6, max_value=0.15), growth=growths)
def test_cp_larger_orders_get_a_strictly_worse_price_and_more_impact(x_to_y: bool, share: float, growth: float) -> None:
    pool = cp_pool()
    small_amount = cp_amount(pool, x_to_y, share)
    small, big = pool.fill(small_amount, x_to_y), pool.fill(small_amount * growth, x_to_y)
    assert big.amount_out / big.amount_in < small.amount_out / small.amount_in
    assert big.price_impact_pct > small.price_impact_pct


@PROPS
@given(x_to_y=directions, share=st.floats(min_value=1e-6, max_value=0.15), growth=growths)
def test_binned_larger_orders_never_get_a_better_price(x_to_y: bool, share: float, growth: float) -> None:
    pool = binned_pool()
    small_amount = binned_amount(pool, x_to_y, share)
    small, big = pool.fill(small_amount, x_to_y), pool.fill(small_amount * growth, x_to_y)
    assert big.amount_out / big.amount_in <= small.amount_out / small.amount_in * (1 + 1e-12)
    assert big.price_impact_pct >= small.price_impact_pct - 1e-9


@pytest.mark.parametrize("x_to_y", [True, False])
def test_binned_crossing_bins_gives_a_strictly_worse_price(x_to_y: bool) -> None:
    pool = binned_pool()
    inside = pool.fill(binned_amount(pool, x_to_y, 0.001), x_to_y)
    across = pool.fill(binned_amount(pool, x_to_y, 0.5), x_to_y)
    assert across.amount_out / across.amount_in < inside.amount_out / inside.amount_in
    assert across.price_impact_pct > inside.price_impact_pct > -1e-12


@pytest.mark.parametrize("make", [cp_pool, binned_pool], ids=["cp", "binned"])
@pytest.mark.parametrize("x_to_y", [True, False])
def test_tiny_trade_has_about_zero_price_impact(make, x_to_y: bool) -> None:
    pool = make()
    fill = pool.fill(1e-6, x_to_y)
    assert 0.0 <= fill.price_impact_pct < 1e-6
    spot_out_per_in = pool.spot() if x_to_y else 1 / pool.spot()
    fee = fill.fee_bps / 10_000
    assert fill.amount_out / fill.amount_in == pytest.approx(spot_out_per_in * (1 - fee), rel=1e-6)


# --------------------------------------------------------------------------- fees


@PROPS
@given(x_to_y=directions, share=shares)
def test_cp_fee_is_applied(x_to_y: bool, share: float) -> None:
    free, charged = cp_pool(fee_bps=0.0), cp_pool(fee_bps=25.0)
    amount = cp_amount(free, x_to_y, share)
    assert free.fill(amount, x_to_y).amount_out > charged.fill(amount, x_to_y).amount_out


@PROPS
@given(x_to_y=directions, share=shares)
def test_binned_fee_is_applied(x_to_y: bool, share: float) -> None:
    free, charged = binned_pool(base_fee_bps=0.0), binned_pool(base_fee_bps=20.0)
    amount = binned_amount(charged, x_to_y, share)
    assert free.fill(amount, x_to_y).amount_out > charged.fill(amount, x_to_y).amount_out


@pytest.mark.parametrize(
    ("volatility", "expected_fee_bps"),
    [(0.0, 20.0), (1.0, 22.0), (3.0, 38.0), (5.0, 70.0), (8.0, 148.0), (9.0, 170.0), (100.0, 170.0)],
)
def test_binned_fee_grows_with_volatility_up_to_the_cap(volatility: float, expected_fee_bps: float) -> None:
    pool = binned_pool()
    pool.volatility = volatility
    assert pool.fee_bps() == pytest.approx(expected_fee_bps)


def test_binned_fee_rises_after_a_bin_crossing_swap_and_decays_back() -> None:
    pool = binned_pool()
    base = pool.fee_bps()
    amount = 20.0
    before = pool.fill(amount, True)
    pool.swap(binned_amount(pool, True, 0.2), True)
    crossed = pool.volatility
    assert crossed >= 2
    assert pool.fee_bps() > base
    # the same trade now pays the higher fee
    assert pool.fill(amount, True).fee_bps == pool.fee_bps() > before.fee_bps
    pool.decay(pool.volatility_half_life_s)
    assert pool.volatility == pytest.approx(crossed / 2)
    raised = pool.fee_bps()
    pool.decay(10 * pool.volatility_half_life_s)
    assert base < pool.fee_bps() < raised
    pool.decay(100 * pool.volatility_half_life_s)
    assert pool.fee_bps() == pytest.approx(base, abs=1e-6)


def test_cp_decay_is_a_no_op() -> None:
    pool = cp_pool()
    before = snapshot(pool)
    pool.decay(1_000.0)
    assert snapshot(pool) == before


# --------------------------------------------------------------------------- swap vs fill


@pytest.mark.parametrize("kind", ["cp", "binned"])
@PROPS
@given(x_to_y=directions, share=st.floats(min_value=1e-6, max_value=0.9))
def test_fill_does_not_mutate_and_swap_returns_the_same_fill(kind: str, x_to_y: bool, share: float) -> None:
    pool = cp_pool() if kind == "cp" else binned_pool()
    amount = cp_amount(pool, x_to_y, share) if isinstance(pool, ConstantProductPool) else binned_amount(pool, x_to_y, share)
    before = snapshot(pool)
    quoted = pool.fill(amount, x_to_y)
    assert snapshot(pool) == before
    done = pool.swap(amount, x_to_y)
    assert snapshot(pool) != before
    assert done == quoted


@PROPS
@given(x_to_y=directions, share=shares)
def test_cp_swap_moves_spot_the_right_way_and_keeps_the_fee(x_to_y: bool, share: float) -> None:
    pool = cp_pool()
    amount = cp_amount(pool, x_to_y, share)
    spot, k = pool.spot(), pool.reserve_x * pool.reserve_y
    x, y = pool.reserve_x, pool.reserve_y
    fill = pool.swap(amount, x_to_y)
    if x_to_y:  # selling base: base gets cheaper
        assert pool.spot() < spot
        assert (pool.reserve_x, pool.reserve_y) == (x + amount, y - fill.amount_out)
    else:
        assert pool.spot() > spot
        assert (pool.reserve_x, pool.reserve_y) == (x - fill.amount_out, y + amount)
    assert pool.reserve_x * pool.reserve_y > k  # the fee stays in the pool


@PROPS
@given(x_to_y=directions, share=shares)
def test_binned_swap_moves_spot_the_right_way_and_conserves_value(x_to_y: bool, share: float) -> None:
    pool = binned_pool()
    amount = binned_amount(pool, x_to_y, share)
    spot = pool.spot()
    total_x, total_y = (sum(b[i] for b in pool.bins.values()) for i in (0, 1))
    fill = pool.swap(amount, x_to_y)
    after_x, after_y = (sum(b[i] for b in pool.bins.values()) for i in (0, 1))
    after_fee = amount * (1 - fill.fee_bps / 10_000)
    if x_to_y:
        assert pool.spot() <= spot
        assert after_y == pytest.approx(total_y - fill.amount_out, rel=1e-9, abs=1e-9)
        assert after_x == pytest.approx(total_x + after_fee, rel=1e-9)
    else:
        assert pool.spot() >= spot
        assert after_x == pytest.approx(total_x - fill.amount_out, rel=1e-9, abs=1e-9)
        assert after_y == pytest.approx(total_y + after_fee, rel=1e-9)


@pytest.mark.parametrize(("x_to_y", "sign"), [(True, -1), (False, 1)])
def test_binned_large_swap_crosses_bins(x_to_y: bool, sign: int) -> None:
    pool = binned_pool()
    spot = pool.spot()
    pool.swap(binned_amount(pool, x_to_y, 0.5), x_to_y)
    assert sign * pool.active >= 5
    assert (pool.spot() - spot) * sign > 0
    assert pool.volatility == abs(pool.active)


# --------------------------------------------------------------------------- exhaustion


@pytest.mark.parametrize("x_to_y", [True, False])
@pytest.mark.parametrize("excess", [1.001, 1.5, 100.0])
def test_binned_pool_exhausted_beyond_its_depth(x_to_y: bool, excess: float) -> None:
    pool = binned_pool()
    capacity = binned_capacity_in(pool, x_to_y)
    pool.fill(capacity * 0.999, x_to_y)  # fits
    before = snapshot(pool)
    with pytest.raises(PoolExhausted):
        pool.fill(capacity * excess, x_to_y)
    with pytest.raises(PoolExhausted):
        pool.swap(capacity * excess, x_to_y)
    assert snapshot(pool) == before  # a refused swap changes nothing


@PROPS
@given(x_to_y=directions, amount=st.floats(min_value=1e-3, max_value=1e15))
def test_cp_never_exhausts(x_to_y: bool, amount: float) -> None:
    pool = cp_pool()
    assert pool.fill(amount, x_to_y).amount_out < output_depth(pool, x_to_y)


# --------------------------------------------------------------------------- move_price_to


@PROPS
@given(target=st.floats(min_value=1.0, max_value=10_000.0))
def test_cp_move_price_to_hits_the_target_and_keeps_k(target: float) -> None:
    pool = cp_pool()
    k = pool.reserve_x * pool.reserve_y
    pool.move_price_to(target)
    assert pool.spot() == pytest.approx(target, rel=1e-9)
    assert pool.reserve_x * pool.reserve_y == pytest.approx(k, rel=1e-9)


@PROPS
@given(bins_away=st.floats(min_value=-BINS_EACH_SIDE + 0.5, max_value=BINS_EACH_SIDE - 0.5))
def test_binned_move_price_to_lands_in_the_target_bin(bins_away: float) -> None:
    pool = binned_pool()
    growth = 1 + BIN_STEP_BPS / 10_000
    target = PRICE * growth**bins_away
    pool.move_price_to(target)
    assert abs(math.log(pool.spot() / target)) <= math.log(growth) / 2 + 1e-9
    assert pool.volatility == abs(pool.active)
    # crossed bins changed sides: below the active bin only y, above it only x
    for i, (x, y) in pool.bins.items():
        if i < pool.active:
            assert x == 0.0
        elif i > pool.active:
            assert y == 0.0


@pytest.mark.parametrize(("target", "edge"), [(PRICE * 10, BINS_EACH_SIDE), (PRICE / 10, -BINS_EACH_SIDE)])
def test_binned_move_price_to_is_clamped_to_the_outer_bins(target: float, edge: int) -> None:
    pool = binned_pool()
    pool.move_price_to(target)
    assert pool.active == edge


@pytest.mark.parametrize("target", [140.0, 160.0])
def test_binned_move_price_to_preserves_value_at_bin_prices(target: float) -> None:
    pool = binned_pool()
    value = sum(x * pool.price_of(i) + y for i, (x, y) in pool.bins.items())
    pool.move_price_to(target)
    after = sum(x * pool.price_of(i) + y for i, (x, y) in pool.bins.items())
    assert after == pytest.approx(value, rel=1e-12)
