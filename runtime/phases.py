"""Where the engine's start-up (and stop) time goes: the seconds of each phase, logged once the engine is
ready (``start-up phases``) and once it has stopped (``engine stopped``), so a slow one names its slow phase."""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger("runtime.phases")


def _process_age_s() -> float:
    """Seconds since this process was created (its interpreter start and imports included)."""
    try:
        with open(f"/proc/{os.getpid()}/stat") as f:
            start_ticks = int(f.read().rpartition(")")[2].split()[19])
        with open("/proc/uptime") as f:
            uptime_s = float(f.read().split()[0])
        return max(0.0, uptime_s - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


class PhaseClock:
    """Marks the end of each start-up phase; :meth:`report` logs them all in one line."""

    def __init__(self, *, from_now: bool = False) -> None:
        """Counts from the process's creation, or (``from_now``) from this call (a stop's phases)."""
        self._origin = time.monotonic() - (0.0 if from_now else _process_age_s())
        self._last = self._origin
        self.phases: dict[str, float] = {}

    def mark(self, phase: str) -> None:
        """The phase named ``phase`` ends now (it began where the previous one ended)."""
        now = time.monotonic()
        self.phases[phase] = round(now - self._last, 2)
        self._last = now

    def total_s(self) -> float:
        return round(time.monotonic() - self._origin, 2)

    def report(self) -> None:
        log.info("start-up phases", extra={"phases_s": self.phases, "total_s": self.total_s()})
