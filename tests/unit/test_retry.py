"""RetryPolicy: the exponential schedule, its cap, should_retry and jitter bounds."""

from __future__ import annotations

import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.retry import RetryPolicy


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 10.0), (7, 10.0), (20, 10.0)],
)
def test_default_schedule_doubles_from_half_a_second_capped_at_max(attempt: int, expected: float) -> None:
    assert RetryPolicy().delay_after(attempt) == expected


@pytest.mark.parametrize(
    ("policy", "schedule"),
    [
        (RetryPolicy(base_delay_s=0.5, max_delay_s=8.0), [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]),
        (RetryPolicy(base_delay_s=0.2, max_delay_s=5.0), [0.2, 0.4, 0.8, 1.6, 3.2, 5.0]),
        (RetryPolicy(base_delay_s=1.0, factor=3.0, max_delay_s=20.0), [1.0, 3.0, 9.0, 20.0, 20.0, 20.0]),
        (RetryPolicy(base_delay_s=0.0), [0.0] * 6),
    ],
)
def test_configured_schedules(policy: RetryPolicy, schedule: list[float]) -> None:
    assert [policy.delay_after(n) for n in range(1, 7)] == pytest.approx(schedule)


@settings(deadline=None, max_examples=100, database=None)
@given(attempt=st.integers(min_value=1, max_value=5_000))
@example(attempt=1025)
def test_delay_never_exceeds_the_cap_for_any_attempt(attempt: int) -> None:
    # Fails on engine/retry.py: ``factor ** (attempt - 1)`` overflows a float from attempt 1025 on.
    assert 0.0 <= RetryPolicy().delay_after(attempt) <= 10.0


@pytest.mark.parametrize(
    ("max_attempts", "attempt", "expected"),
    [(3, 1, True), (3, 2, True), (3, 3, False), (3, 4, False), (1, 1, False), (5, 4, True), (5, 5, False)],
)
def test_should_retry_until_max_attempts(max_attempts: int, attempt: int, expected: bool) -> None:
    assert RetryPolicy(max_attempts=max_attempts).should_retry(attempt) is expected


@pytest.mark.parametrize("max_attempts", [1, 2, 3, 6])
def test_exactly_max_attempts_are_made(max_attempts: int) -> None:
    policy = RetryPolicy(max_attempts=max_attempts)
    attempts = 1
    while policy.should_retry(attempts):
        attempts += 1
    assert attempts == max_attempts


@pytest.mark.parametrize("jitter", [0.1, 0.25, 0.5])
@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8])
def test_jitter_stays_within_bounds(jitter: float, attempt: int) -> None:
    policy = RetryPolicy(jitter=jitter)
    plain = RetryPolicy().delay_after(attempt)
    rng = random.Random(attempt * 1000 + int(jitter * 100))
    delays = [policy.delay_after(attempt, rng) for _ in range(300)]
    cap = policy.max_delay_s
    assert all(plain * (1 - jitter) <= d <= min(cap, plain * (1 + jitter)) for d in delays)
    assert len(set(delays)) > 1  # it does vary
    assert min(delays) < plain
    if plain < cap:
        assert plain < max(delays)


def test_jitter_needs_an_rng() -> None:
    assert RetryPolicy(jitter=0.5).delay_after(3) == 2.0


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    policy = RetryPolicy(jitter=0.3)
    first = [policy.delay_after(n, random.Random(9)) for n in range(1, 5)]
    again = [policy.delay_after(n, random.Random(9)) for n in range(1, 5)]
    assert first == again
