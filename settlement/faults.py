"""Fault injection at the settlement protocol's steps (tests and the fault benchmark only).

``OEE_CHAIN_FAULT_STEP`` names a step of :data:`engine.settlement.STEPS` (or ``any``); at that step, with chance
``OEE_CHAIN_FAULT_RATE``, the run dies (``raise``: the order's run is lost), its process dies (``exit``:
``os._exit``, as when the executor is killed), or it stops there for good (``hang``: after touching
``OEE_CHAIN_FAULT_MARKER``, so a harness can ``kill -9`` the whole engine while runs sit at the step).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import EngineError
from engine.settings import Settings
from engine.settlement import STEPS, Checkpoint, no_checkpoint

log = logging.getLogger("settlement.faults")

ANY = "any"
"""Fault at every step, each time with the rate's chance."""


class InjectedFault(EngineError):
    def __init__(self, step: str, order_id: str) -> None:
        super().__init__(step, order_id)
        self.step = step
        self.order_id = order_id

    def __str__(self) -> str:
        return f"fault injected after {self.step} of {self.order_id}"


@dataclass
class StepFault:
    step: str
    rate: float
    mode: str = "raise"
    marker: Path | None = None
    rng: random.Random = field(default_factory=random.Random)
    fired: int = 0

    def __post_init__(self) -> None:
        if self.step not in (*STEPS, ANY):
            raise ValueError(f"unknown settlement step {self.step!r}: one of {', '.join(STEPS)} or {ANY}")

    async def __call__(self, step: str, order_id: str) -> None:
        if self.step not in (step, ANY) or self.rng.random() >= self.rate:
            return
        self.fired += 1
        log.warning("injecting a fault", extra={"order_id": order_id, "step": step, "mode": self.mode})
        if self.mode == "exit":
            os._exit(137)
        if self.mode == "hang":
            if self.marker is not None:
                self.marker.touch()
            await asyncio.Event().wait()
        raise InjectedFault(step, order_id)


def checkpoint_for(settings: Settings) -> Checkpoint:
    if not settings.chain_fault_step or settings.chain_fault_rate <= 0:
        return no_checkpoint
    marker = Path(settings.chain_fault_marker) if settings.chain_fault_marker else None
    return StepFault(settings.chain_fault_step, settings.chain_fault_rate, settings.chain_fault_mode, marker)
