"""Fault injection at the settlement protocol's steps (tests and the fault benchmark only).

``OEE_CHAIN_FAULT_STEP`` names a step of :data:`engine.settlement.STEPS`; at that step, with chance
``OEE_CHAIN_FAULT_RATE``, the run dies (``raise``: the order's run is lost, as when its executor is
killed) or the process does (``exit``: ``os._exit``, as ``kill -9``).
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field

from engine.errors import EngineError
from engine.settings import Settings
from engine.settlement import STEPS, Checkpoint, no_checkpoint

log = logging.getLogger("settlement.faults")


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
    exit_process: bool = False
    rng: random.Random = field(default_factory=random.Random)
    fired: int = 0

    def __post_init__(self) -> None:
        if self.step not in STEPS:
            raise ValueError(f"unknown settlement step {self.step!r}: one of {', '.join(STEPS)}")

    async def __call__(self, step: str, order_id: str) -> None:
        if step != self.step or self.rng.random() >= self.rate:
            return
        self.fired += 1
        log.warning("injecting a fault", extra={"order_id": order_id, "step": step, "exit": self.exit_process})
        if self.exit_process:
            os._exit(137)
        raise InjectedFault(step, order_id)


def checkpoint_for(settings: Settings) -> Checkpoint:
    if not settings.chain_fault_step or settings.chain_fault_rate <= 0:
        return no_checkpoint
    return StepFault(settings.chain_fault_step, settings.chain_fault_rate, exit_process=settings.chain_fault_mode == "exit")
