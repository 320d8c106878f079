"""The protocol's decisions and conversions, as pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.chain import ChainTx, TokenChange, TxState
from engine.settlement import PendingTx, Step, from_base_units, next_step, swaps_from_landed, to_base_units

PENDING = PendingTx("order_1", "sig", b"raw", last_valid_height=100)


@pytest.mark.parametrize(
    ("height", "state", "step"),
    [
        (50, TxState.LANDED, Step.ADOPT),
        (150, TxState.LANDED, Step.ADOPT),  # landed before it expired: adopted whatever the height now
        (50, TxState.UNKNOWN, Step.RESEND),
        (100, TxState.UNKNOWN, Step.RESEND),  # the last valid height itself is still valid
        (101, TxState.UNKNOWN, Step.REBUILD),
        (50, TxState.FAILED, Step.REBUILD),
    ],
)
def test_next_step(height: int, state: TxState, step: Step) -> None:
    assert next_step(PENDING, height, state) is step


@pytest.mark.parametrize(
    ("amount", "decimals", "units"),
    [(1.0, 9, 1_000_000_000), (0.1, 6, 100_000), (150.123456789, 6, 150_123_456), (0.000001, 6, 1), (0.0000009, 6, 0), (2.5, 5, 250_000)],
)
def test_base_units_round_down(amount: float, decimals: int, units: int) -> None:
    assert to_base_units(amount, decimals) == units


@given(st.integers(min_value=0, max_value=2**50), st.sampled_from([5, 6, 9]))
def test_base_units_round_trip(units: int, decimals: int) -> None:
    assert to_base_units(from_base_units(units, decimals), decimals) == units


def test_swaps_from_landed_reads_each_venue_vault() -> None:
    sol, usdc = "So11111111111111111111111111111111111111112", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
    changes = (
        TokenChange("t_sol", "trader", sol, 10_000_000_000, 7_000_000_000),
        TokenChange("t_usdc", "trader", usdc, 0, 449_000_000),
        TokenChange("r_sol", "ray", sol, 0, 2_000_000_000),
        TokenChange("r_usdc", "ray", usdc, 10**12, 10**12 - 300_000_000),
        TokenChange("m_sol", "met", sol, 0, 1_000_000_000),
        TokenChange("m_usdc", "met", usdc, 10**12, 10**12 - 149_000_000),
    )
    tx = ChainTx("sig", 5, ("trader", "ray", "met"), changes, "order_1")
    decimals = {sol: 9, usdc: 6}
    swaps = swaps_from_landed(tx, "order_1", {"ray": "raydium", "met": "meteora"}, decimals.__getitem__, 1.0)
    assert swaps["raydium"].amount_in == 2.0 and swaps["raydium"].amount_out == 300.0
    assert swaps["meteora"].amount_in == 1.0 and swaps["meteora"].amount_out == 149.0
    assert {s.tx_hash for s in swaps.values()} == {"sig"}
    assert swaps["raydium"].execution_price == 150.0
