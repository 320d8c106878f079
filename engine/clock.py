"""Time as a collaborator: the core asks a Clock, so tests can drive time by hand."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds, monotonic enough for rates and latencies."""

    def epoch_ms(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def epoch_ms(self) -> float:
        return time.time() * 1000.0

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock that moves only when told to; ``sleep`` advances it instantly."""

    def __init__(self, start: float = 1_000.0, epoch_ms: float = 1_764_000_000_000.0) -> None:
        self._now = start
        self._epoch0 = epoch_ms - start * 1000.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self._now

    def epoch_ms(self) -> float:
        return self._epoch0 + self._now * 1000.0

    def advance(self, seconds: float) -> None:
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self._now += max(0.0, seconds)
        await asyncio.sleep(0)
