"""A venue circuit breaker: closed, open, half-open. Pure state; the caller passes the time.

Closed: calls go through and their outcomes fill a rolling window (ten buckets). Once the window holds
at least ``min_calls`` and the share of errors reaches ``error_rate``, the breaker opens: calls are
refused at once (routing uses the other venues) for ``cooldown_s``. Then it is half-open: calls go
through again, and the first outcome decides: a success closes it (with an empty window), an error
opens it for another cool-down.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

BUCKETS = 10


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    window_s: float = 30.0
    min_calls: int = 20
    error_rate: float = 0.5
    cooldown_s: float = 10.0
    state: BreakerState = field(init=False, default=BreakerState.CLOSED)
    opened_at: float | None = field(init=False, default=None)
    trips: int = field(init=False, default=0)
    last_error: str | None = field(init=False, default=None)
    _buckets: deque[list[float]] = field(init=False, default_factory=deque)  # [start, calls, errors]

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.cooldown_s <= 0 or self.min_calls < 1 or not 0 < self.error_rate <= 1:
            raise ValueError("window and cool-down must be positive, min_calls at least 1, error_rate in (0, 1]")

    def allow(self, now: float) -> bool:
        """May a call go to the venue now? (An open breaker becomes half-open after its cool-down.)"""
        if self.state is BreakerState.OPEN:
            assert self.opened_at is not None
            if now - self.opened_at < self.cooldown_s:
                return False
            self.state = BreakerState.HALF_OPEN
        return True

    def record(self, now: float, ok: bool, error: str | None = None) -> None:
        """The outcome of a call that was allowed."""
        if not ok:
            self.last_error = error
        if self.state is BreakerState.HALF_OPEN:
            if ok:
                self.state, self.opened_at = BreakerState.CLOSED, None
                self._buckets.clear()
            else:
                self._open(now)
            return
        if self.state is BreakerState.OPEN:
            return  # a call that started before it opened
        bucket = self._bucket(now)
        bucket[1] += 1
        bucket[2] += 0 if ok else 1
        calls, errors = self._totals(now)
        if calls >= self.min_calls and errors / calls >= self.error_rate:
            self._open(now)

    def _open(self, now: float) -> None:
        self.state, self.opened_at = BreakerState.OPEN, now
        self.trips += 1
        self._buckets.clear()

    def _bucket(self, now: float) -> list[float]:
        width = self.window_s / BUCKETS
        if not self._buckets or now - self._buckets[-1][0] >= width:
            self._buckets.append([now, 0.0, 0.0])
        self._expire(now)
        return self._buckets[-1]

    def _expire(self, now: float) -> None:
        while self._buckets and now - self._buckets[0][0] >= self.window_s:
            self._buckets.popleft()

    def _totals(self, now: float) -> tuple[float, float]:
        self._expire(now)
        return sum(b[1] for b in self._buckets), sum(b[2] for b in self._buckets)

    def snapshot(self, now: float) -> dict[str, Any]:
        """The breaker's state for /readyz and metrics."""
        if self.state is BreakerState.OPEN and self.opened_at is not None and now - self.opened_at >= self.cooldown_s:
            state = BreakerState.HALF_OPEN  # what the next call will find
        else:
            state = self.state
        calls, errors = self._totals(now)
        body: dict[str, Any] = {
            "state": state.value,
            "calls": int(calls),
            "errors": int(errors),
            "errorRate": round(errors / calls, 4) if calls else 0.0,
            "trips": self.trips,
        }
        if state is BreakerState.OPEN and self.opened_at is not None:
            body["retryInS"] = round(max(0.0, self.cooldown_s - (now - self.opened_at)), 3)
        if self.last_error:
            body["lastError"] = self.last_error[:200]
        return body
