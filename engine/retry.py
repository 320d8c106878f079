"""Exponential back-off between attempts, as a pure schedule."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay_s: float = 0.5
    factor: float = 2.0
    max_delay_s: float = 10.0
    jitter: float = 0.0  # fraction of the delay, drawn uniformly in [-jitter, +jitter]

    def should_retry(self, attempt: int) -> bool:
        """After attempt number ``attempt`` (1-based) failed transiently, may we try again?"""
        return attempt < self.max_attempts

    def delay_after(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after attempt ``attempt`` failed: base, base*factor, base*factor^2..."""
        exponent = min(max(attempt - 1, 0), 64)  # past 2**64 the cap applies anyway; avoids float overflow
        delay = min(self.max_delay_s, self.base_delay_s * self.factor**exponent)
        if self.jitter and rng is not None:
            delay = min(self.max_delay_s, delay * (1.0 + rng.uniform(-self.jitter, self.jitter)))
        return max(0.0, delay)
