"""TokenBucket with explicit times: bursts, queued reservations, refill, and the rate bound."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.rate_limiter import RateLimiter
from engine.clock import ManualClock
from engine.start_limit import StartLimit
from engine.token_bucket import TokenBucket


@pytest.mark.parametrize(("rate", "capacity"), [(2.0, 5), (10.0, 1), (0.5, 3), (100.0, 20)])
def test_burst_up_to_capacity_then_one_token_per_interval(rate: float, capacity: int) -> None:
    bucket = TokenBucket(rate_per_s=rate, capacity=capacity)
    assert [bucket.reserve(0.0) for _ in range(capacity)] == [0.0] * capacity
    waits = [bucket.reserve(0.0) for _ in range(4)]
    assert waits == pytest.approx([1 / rate, 2 / rate, 3 / rate, 4 / rate])


def test_queued_reservations_keep_their_place_as_time_passes() -> None:
    bucket = TokenBucket(rate_per_s=2.0, capacity=2)
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.0) == pytest.approx(0.5)  # ready at 0.5
    assert bucket.reserve(0.0) == pytest.approx(1.0)  # ready at 1.0
    # a caller arriving at 0.25 queues behind both: ready at 1.5
    assert 0.25 + bucket.reserve(0.25) == pytest.approx(1.5)
    # successive waits grow while the queue is not drained
    w1, w2, w3 = bucket.reserve(0.3), bucket.reserve(0.3), bucket.reserve(0.3)
    assert w1 < w2 < w3


def test_refill_is_capped_at_capacity() -> None:
    bucket = TokenBucket(rate_per_s=5.0, capacity=3)
    for _ in range(3):
        bucket.reserve(0.0)
    assert bucket.tokens == 0.0
    bucket.reserve(1_000.0)  # a long idle refills to 3, not 5000
    assert bucket.tokens == pytest.approx(2.0)
    assert [bucket.reserve(1_000.0) for _ in range(2)] == [0.0, 0.0]
    assert bucket.reserve(1_000.0) == pytest.approx(0.2)


def test_partial_refill_is_proportional_to_elapsed_time() -> None:
    bucket = TokenBucket(rate_per_s=4.0, capacity=10)
    for _ in range(10):
        bucket.reserve(0.0)
    # 0.5 s at 4/s gives back 2 tokens
    assert [bucket.reserve(0.5) for _ in range(2)] == [0.0, 0.0]
    assert bucket.reserve(0.5) == pytest.approx(0.25)


def test_a_new_bucket_starts_full_and_an_explicit_level_is_kept() -> None:
    assert TokenBucket(rate_per_s=1.0, capacity=4).tokens == 4
    assert TokenBucket(rate_per_s=1.0, capacity=4, tokens=1.0).tokens == 1.0


def test_try_acquire_never_queues() -> None:
    bucket = TokenBucket(rate_per_s=2.0, capacity=2)
    assert bucket.try_acquire(0.0) is True
    assert bucket.try_acquire(0.0) is True
    assert bucket.try_acquire(0.0) is False
    assert bucket.try_acquire(0.1) is False
    assert bucket.tokens >= 0.0  # a refusal takes nothing
    assert bucket.try_acquire(0.5) is True  # one token refilled after 1/rate


def test_try_acquire_fails_while_reservations_are_queued() -> None:
    bucket = TokenBucket(rate_per_s=1.0, capacity=1)
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.0) == pytest.approx(1.0)
    assert bucket.try_acquire(1.0) is False  # the token refilled at 1.0 belongs to the queued reservation
    assert bucket.try_acquire(2.0) is True


@pytest.mark.parametrize(("rate", "capacity"), [(0.0, 1), (-1.0, 1), (1.0, 0.5), (1.0, 0)])
def test_invalid_configuration_is_refused(rate: float, capacity: float) -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        TokenBucket(rate_per_s=rate, capacity=capacity)


@settings(deadline=None, max_examples=200, database=None)
@given(
    rate=st.floats(min_value=0.1, max_value=100.0),
    capacity=st.integers(min_value=1, max_value=20),
    steps=st.lists(
        st.tuples(st.sampled_from([0.0, 0.0, 0.001, 0.01, 0.1, 0.5, 1.0, 3.0]), st.integers(min_value=1, max_value=8)),
        min_size=1,
        max_size=30,
    ),
)
def test_tokens_ready_in_any_window_never_exceed_capacity_plus_rate_times_length(
    rate: float, capacity: int, steps: list[tuple[float, int]]
) -> None:
    bucket = TokenBucket(rate_per_s=rate, capacity=capacity)
    now = 0.0
    ready: list[float] = []
    for gap, count in steps:
        now += gap
        for _ in range(count):
            wait = bucket.reserve(now)
            assert wait >= 0.0
            ready.append(now + wait)
    ready.sort()
    # The densest window [t, t+T) starts at a ready time; checking [ready[i], ready[j]] covers every T > ready[j]-ready[i].
    for i in range(len(ready)):
        for j in range(i, len(ready)):
            tokens_in_window = j - i + 1
            assert tokens_in_window <= capacity + rate * (ready[j] - ready[i]) + 1e-9


@settings(deadline=None, max_examples=200, database=None)
@given(
    rate=st.floats(min_value=0.1, max_value=100.0),
    capacity=st.integers(min_value=1, max_value=20),
    steps=st.lists(
        st.tuples(st.sampled_from([0.0, 0.001, 0.01, 0.1, 0.5, 2.0]), st.integers(min_value=0, max_value=8), st.booleans()),
        min_size=1,
        max_size=30,
    ),
)
def test_tokens_taken_ahead_and_reserved_together_still_keep_the_limit(
    rate: float, capacity: int, steps: list[tuple[float, int, bool]]
) -> None:
    """The dispatcher's stock: tokens taken only when available (``take``) mixed with reservations;
    a token's start time is when it was granted (stock) or when its wait ends (reservation)."""
    clock = ManualClock(start=0.0)
    limiter = RateLimiter(per_minute=rate * 60, burst=capacity, clock=clock)
    ready: list[float] = []
    for gap, count, ahead in steps:
        clock.advance(gap)
        now = clock.now()
        if ahead:
            taken = limiter.take(count)
            assert 0 <= taken <= count
            ready += [now] * taken
        else:
            ready += [now + wait for wait in limiter.reserve(count)]
    assert limiter.granted == len(ready)
    ready.sort()
    for i in range(len(ready)):
        for j in range(i, len(ready)):
            assert j - i + 1 <= capacity + rate * (ready[j] - ready[i]) + 1e-9


def test_take_never_waits_and_takes_only_what_is_there() -> None:
    clock = ManualClock(start=0.0)
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    assert limiter.take(5) == 3  # a full bucket of 3
    assert limiter.take(1) == 0  # empty: nothing, and no debt
    clock.advance(1.0)
    assert limiter.take(5) == 1  # one token a second
    assert limiter.reserve(1) == [pytest.approx(1.0)]  # a reservation queues behind, as before


# --------------------------------------------------------------------------- the start limit (window + burst)


def test_a_quiet_minute_allows_the_whole_allowance_at_once_then_the_window_holds() -> None:
    limit = StartLimit(per_window=100, burst=100)
    assert [limit.reserve(0.0) for _ in range(100)] == [0.0] * 100  # what the seed system's limiter allows too
    assert limit.reserve(0.0) == pytest.approx(60.0)  # the 101st waits until the first start leaves the window
    assert limit.try_acquire(30.0) is False


def test_the_burst_caps_starts_at_one_moment() -> None:
    limit = StartLimit(per_window=100, burst=10)
    waits = [limit.reserve(0.0) for _ in range(12)]
    assert waits[:10] == [0.0] * 10
    assert waits[10:] == pytest.approx([0.6, 1.2])  # then one per 60/100 s


@settings(deadline=None, max_examples=200, database=None)
@given(
    per_window=st.integers(min_value=1, max_value=30),
    burst=st.integers(min_value=1, max_value=40),
    steps=st.lists(
        st.tuples(st.sampled_from([0.0, 0.01, 0.5, 5.0, 30.0, 61.0]), st.integers(min_value=0, max_value=12), st.booleans()),
        min_size=1,
        max_size=30,
    ),
)
def test_never_more_than_the_limit_in_any_window(per_window: int, burst: int, steps: list[tuple[float, int, bool]]) -> None:
    limit = StartLimit(per_window=per_window, burst=burst, window_s=60.0)
    now = 0.0
    starts: list[float] = []
    for gap, count, ahead in steps:
        now += gap
        for _ in range(count):
            if ahead:
                if limit.try_acquire(now):
                    starts.append(now)
            else:
                starts.append(now + limit.reserve(now))
    starts.sort()
    for i, first in enumerate(starts):
        in_window = sum(1 for t in starts[i:] if t < first + 60.0 - 1e-9)
        assert in_window <= per_window
        at_once = sum(1 for t in starts if abs(t - first) < 1e-12)
        assert at_once <= max(burst, 1)
