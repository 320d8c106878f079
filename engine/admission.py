"""Admission at intake: the verdicts of the one atomic check an order passes before it is stored, and
what each tells the client (status, Retry-After, the IETF RateLimit headers). Pure.

The check itself runs in Redis (:mod:`engine.adapters.admission_store`), so it holds across ingress
replicas and nodes: the trading state, the account's token bucket (``rate`` per second, ``burst`` at
once), the engine's queue depth, the account's open orders and their USD value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

from engine.trading_state import ScopeState

OPEN_ORDERS_RETRY_S = 2
"""Retry-After for an account at its open-order cap: nothing says when its orders will finish."""
QUEUE_RETRY_MAX_S = 60


class Verdict(IntEnum):
    """What the admission check decided (the codes the Redis script answers)."""

    ADMITTED = 0
    REVOKED = 1
    """The key was revoked (on another replica, a moment ago)."""
    STATE_UNKNOWN = 2
    """Redis holds no trading state (it restarted empty): load it from PostgreSQL and ask again."""
    HALTED = 3
    RATE_LIMITED = 4
    QUEUE_FULL = 5
    TOO_MANY_OPEN = 6
    OPEN_NOTIONAL = 7


@dataclass(frozen=True, slots=True)
class Admission:
    verdict: Verdict
    burst: int
    rate_per_s: float
    tokens: float
    """Tokens left in the account's bucket after this request."""
    open_orders: int = 0
    open_usd: float = 0.0
    queued: int = 0
    halt: ScopeState | None = None

    @property
    def admitted(self) -> bool:
        return self.verdict is Verdict.ADMITTED

    def rate_headers(self) -> dict[str, str]:
        return rate_limit_headers(self.burst, self.rate_per_s, self.tokens)


def rate_limit_headers(burst: int, rate_per_s: float, tokens: float) -> dict[str, str]:
    """``RateLimit-Limit`` (the bucket's size), ``RateLimit-Remaining`` (whole tokens left) and
    ``RateLimit-Reset`` (seconds until the bucket is full again), as in draft-ietf-httpapi-ratelimit-headers;
    ``RateLimit-Policy`` says the same as a quota over a window."""
    left = max(0.0, tokens)
    reset = math.ceil(max(0.0, burst - left) / rate_per_s)
    window = max(1, math.ceil(burst / rate_per_s))
    return {
        "RateLimit-Limit": str(burst),
        "RateLimit-Remaining": str(math.floor(left)),
        "RateLimit-Reset": str(reset),
        "RateLimit-Policy": f"{burst};w={window}",
    }


def retry_after_rate(rate_per_s: float, tokens: float) -> int:
    """Whole seconds until the bucket holds a token again (at least 1)."""
    return max(1, math.ceil((1.0 - max(0.0, tokens)) / rate_per_s))


def retry_after_queue(queued: int, cap: int, drain_per_s: float) -> int:
    """Seconds for the queue to drain below its cap at the dispatch rate (1 to 60)."""
    excess = max(1, queued - cap + 1)
    return min(QUEUE_RETRY_MAX_S, max(1, math.ceil(excess / drain_per_s)))
