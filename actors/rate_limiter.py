"""RateLimiter: one start limit for the whole engine (so the limit holds across executors and nodes)."""

from __future__ import annotations

from engine.clock import Clock, SystemClock
from engine.gc_tuning import tune_garbage_collection
from engine.start_limit import StartLimit


class RateLimiter:
    def __init__(self, per_minute: float, burst: int, clock: Clock | None = None) -> None:
        tune_garbage_collection()
        self._clock = clock or SystemClock()
        self._limit = StartLimit(per_window=per_minute, burst=burst)
        self.granted = 0

    async def acquire(self) -> float:
        """Wait for a token; return the (monotonic) time it was scheduled for."""
        now = self._clock.now()
        wait = self._limit.reserve(now)
        if wait > 0:
            await self._clock.sleep(wait)
        self.granted += 1
        return now + wait

    def reserve(self, count: int) -> list[float]:
        """Take ``count`` tokens at once; return for each the seconds to wait before using it
        (the caller waits, so one call serves a whole batch of orders)."""
        now = self._clock.now()
        self.granted += count
        return [self._limit.reserve(now) for _ in range(count)]

    def take(self, count: int) -> int:
        """Take up to ``count`` tokens that are available right now (never a reservation); how many."""
        now = self._clock.now()
        taken = 0
        while taken < count and self._limit.try_acquire(now):
            taken += 1
        self.granted += taken
        return taken

    def stats(self) -> dict[str, float]:
        return {"granted": self.granted, "tokens": self._limit.tokens}
