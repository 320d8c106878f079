"""A token bucket that hands out reservations, so waiting callers are served in order.

``reserve(now)`` always takes a token and returns how long the caller must wait
before using it; the level may go negative, which queues later callers behind
earlier ones. Time is passed in, never read, so the bucket is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    rate_per_s: float
    capacity: float
    tokens: float = field(default=-1.0)
    updated_at: float | None = None

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0 or self.capacity < 1:
            raise ValueError("rate must be positive and capacity at least 1")
        if self.tokens < 0:
            self.tokens = self.capacity

    def _refill(self, now: float) -> None:
        if self.updated_at is not None and now > self.updated_at:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated_at) * self.rate_per_s)
        if self.updated_at is None or now > self.updated_at:
            self.updated_at = now

    def reserve(self, now: float) -> float:
        """Take one token; return the seconds to wait until it is really available (0 if now)."""
        self._refill(now)
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate_per_s

    def level(self, now: float) -> float:
        """Tokens in the bucket at ``now`` (negative while reservations wait for the refill)."""
        self._refill(now)
        return self.tokens

    def try_acquire(self, now: float) -> bool:
        """Take a token only if one is available right now."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
