"""How many orders may start: at most ``per_window`` in any ``window_s`` (a sliding window), and at most
``burst`` at one moment (a token bucket refilled at ``per_window / window_s``).

"100 per minute" means what a user reading it expects: never more than 100 starts in any 60 seconds,
and after a quiet minute up to 100 at once (the default burst is the whole allowance). A token bucket
alone would let a full bucket plus a minute of refill, twice the limit, start within one minute.
Reservations keep their order: a caller is told how long to wait, later callers queue behind it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from engine.token_bucket import TokenBucket


@dataclass
class StartLimit:
    per_window: float
    burst: int
    window_s: float = 60.0
    _most: int = field(init=False)
    """Starts allowed in one window: ``per_window`` rounded down (at least 1)."""
    _bucket: TokenBucket = field(init=False)
    _starts: deque[float] = field(init=False, default_factory=deque)
    """Start times granted within the last window, oldest first (non-decreasing)."""

    def __post_init__(self) -> None:
        if self.per_window <= 0 or self.burst < 1 or self.window_s <= 0:
            raise ValueError("per_window and the window must be positive, burst at least 1")
        self._most = max(1, math.floor(self.per_window))
        self._bucket = TokenBucket(rate_per_s=self.per_window / self.window_s, capacity=float(self.burst))

    def _forget_before(self, now: float) -> None:
        while self._starts and self._starts[0] <= now - self.window_s:
            self._starts.popleft()

    def _window_opens(self, at: float) -> float:
        """The earliest time at or after ``at`` when one more start keeps the window's limit."""
        if len(self._starts) < self._most:
            return at
        return max(at, self._starts[-self._most] + self.window_s)

    def reserve(self, now: float) -> float:
        """Take the next start; return the seconds to wait before using it (0 if now)."""
        self._forget_before(now)
        start = self._window_opens(now + self._bucket.reserve(now))
        self._starts.append(start)
        return start - now

    def try_acquire(self, now: float) -> bool:
        """Take a start only if one is available right now (never a reservation)."""
        self._forget_before(now)
        if self._window_opens(now) > now or (self._starts and self._starts[-1] > now):
            return False  # the window is full, or reservations are queued ahead
        if not self._bucket.try_acquire(now):
            return False
        self._starts.append(now)
        return True

    @property
    def tokens(self) -> float:
        return self._bucket.tokens
