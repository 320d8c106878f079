"""The kill switch's rules (engine.trading_state) and the venue circuit breaker (engine.circuit_breaker)."""

from __future__ import annotations

import pytest

from engine.circuit_breaker import BreakerState, CircuitBreaker
from engine.trading_state import GLOBAL, ScopeState, TradingState, TradingStates, pair_scope, parse_pair

H = TradingState.HALTED
A = TradingState.ACTIVE


def change(scope: str, state: TradingState, reason: str = "r") -> ScopeState:
    return ScopeState(scope, state, reason, "ops", 1.0)


@pytest.mark.parametrize(
    ("raw", "scope"),
    [
        ("SOL/USDC", "SOL/USDC"),
        ("usdc/sol", "SOL/USDC"),
        ("So11111111111111111111111111111111111111112/USDC", "SOL/USDC"),
        ("SOL", None),
        ("SOL/SOL", None),
        ("SOL/NOPE", None),
        ("/", None),
        ("SOL/USDC/JUP", None),
    ],
)
def test_pairs_are_unordered_and_canonical(raw: str, scope: str | None) -> None:
    assert parse_pair(raw) == scope
    assert pair_scope("USDC", "SOL") == pair_scope("SOL", "USDC") == "SOL/USDC"


def test_a_pair_halt_stops_both_directions_and_nothing_else() -> None:
    states = TradingStates().apply(change("SOL/USDC", H, "feed"))
    assert states.blocks("SOL", "USDC") and states.blocks("USDC", "SOL") and not states.blocks("JUP", "USDC")
    halt = states.halt_for("USDC", "SOL")
    assert halt is not None and halt.reason == "feed"


def test_the_global_halt_comes_first_and_resuming_clears_only_its_scope() -> None:
    states = TradingStates().apply(change("SOL/USDC", H, "pair")).apply(change(GLOBAL, H, "all"))
    halt = states.halt_for("SOL", "USDC")
    assert halt is not None and halt.reason == "all" and states.blocks("JUP", "USDC")
    states = states.apply(change(GLOBAL, A))
    assert not states.blocks("JUP", "USDC") and states.blocks("SOL", "USDC") and states.globally is None


def test_scope_states_round_trip_and_show_their_pair() -> None:
    state = ScopeState("SOL/USDC", H, "why", "ops", 12.5)
    assert ScopeState.from_json(state.to_json()) == state
    assert state.public() == {
        "state": "halted",
        "reason": "why",
        "changedBy": "ops",
        "changedAt": 12,
        "pair": "SOL/USDC",
    }  # whole epoch ms on the wire
    assert "pair" not in ScopeState(GLOBAL, A, "x", "y", 1).public()
    assert TradingStates.of([state, ScopeState(GLOBAL, A, "x", "y", 1)]).halted == {"SOL/USDC": state}


# --------------------------------------------------------------------------- circuit breaker


def state(breaker: CircuitBreaker) -> BreakerState:
    return breaker.state  # read through a call: mypy would keep the first assert's narrowing


def test_the_breaker_opens_on_the_error_rate_once_it_has_enough_calls() -> None:
    breaker = CircuitBreaker(window_s=10, min_calls=4, error_rate=0.5, cooldown_s=5)
    for ok in (False, False, False):
        assert breaker.allow(0.0)
        breaker.record(0.0, ok, "boom")
    assert state(breaker) is BreakerState.CLOSED  # three calls: not enough to judge
    breaker.record(0.1, True)
    assert state(breaker) is BreakerState.OPEN and breaker.trips == 1  # 3 of 4 failed
    assert not breaker.allow(4.9)
    snap = breaker.snapshot(1.0)
    assert snap["state"] == "open" and snap["retryInS"] == pytest.approx(4.1, abs=0.01) and snap["lastError"] == "boom"


def test_half_open_closes_on_a_success_and_reopens_on_an_error() -> None:
    breaker = CircuitBreaker(window_s=10, min_calls=1, error_rate=1.0, cooldown_s=5)
    breaker.record(0.0, False)
    assert state(breaker) is BreakerState.OPEN
    assert breaker.snapshot(5.0)["state"] == "half_open"
    assert breaker.allow(5.0) and state(breaker) is BreakerState.HALF_OPEN
    breaker.record(5.1, False)
    assert state(breaker) is BreakerState.OPEN and breaker.trips == 2 and not breaker.allow(9.0)
    assert breaker.allow(10.2)
    breaker.record(10.3, True)
    assert state(breaker) is BreakerState.CLOSED and breaker.snapshot(10.3)["calls"] == 0


def test_old_errors_leave_the_window() -> None:
    breaker = CircuitBreaker(window_s=10, min_calls=4, error_rate=0.5, cooldown_s=5)
    for t in (0.0, 0.5, 1.0):
        breaker.record(t, False)
    for t in (11.0, 11.5, 12.0):
        breaker.record(t, True)
    assert state(breaker) is BreakerState.CLOSED  # the three errors are older than the window
    breaker.record(12.5, False)
    assert state(breaker) is BreakerState.CLOSED  # 1 of 4
    assert breaker.snapshot(12.5)["errorRate"] == 0.25


def test_results_of_calls_started_before_it_opened_are_ignored() -> None:
    breaker = CircuitBreaker(window_s=10, min_calls=1, error_rate=1.0, cooldown_s=5)
    breaker.record(0.0, False)
    breaker.record(0.1, True)  # a call allowed before it opened
    assert state(breaker) is BreakerState.OPEN


def test_bad_breaker_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(error_rate=0)
