"""The dispatch policy: which queued orders start, where, and what happens when a run is lost.

Pure state and decisions, no I/O: the Dispatcher actor pops the queue, calls the rate limiter
and the executors, and asks this object what to do at each step.

* **Slots**: at most ``max_concurrent`` orders run at once; a round takes every free slot.
* **Token stock**: rate-limit tokens taken from the limiter ahead of need (only tokens available
  then, so the limit holds); an order whose band needs a token takes one from the stock first.
* **Least-loaded choice**: a whole round goes to the executor running the fewest orders, so its
  orders load, quote, write and swap together (one call each).
* **Redispatch budget**: a run lost with its executor is queued again, at most ``max_redispatch``
  times; then the order is failed on purpose so it still ends.
* **Sweep**: an open order found neither queued, running nor held by the watcher lost its queue
  entry and is queued again.
* **Deferred**: an order popped while a run of it is still under way (fired by the watcher before
  its arming run was reported done) is queued again as soon as that run ends, not left to the sweep.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from engine.bands import Band
from engine.lifecycle import held_by_watcher, is_terminal
from engine.models import Order


@dataclass(frozen=True)
class Round:
    """Orders handed to one executor in one call: ``(order id, seconds to wait for its token)``."""

    executor: int
    orders: list[tuple[str, float]]


@dataclass
class DispatchPolicy:
    executors: int
    max_concurrent: int
    stock_size: int
    max_redispatch: int = 5
    running: set[str] = field(init=False, default_factory=set)
    stock: int = field(init=False, default=0)
    """Rate-limit tokens held ahead of need."""
    given_up: set[str] = field(init=False, default_factory=set)
    peak_running: int = field(init=False, default=0)
    dispatched: int = field(init=False, default=0)
    _load: list[int] = field(init=False)
    _reserved: int = field(init=False, default=0)
    _redispatched: dict[str, int] = field(init=False, default_factory=dict)
    _deferred: dict[str, Band] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.executors < 1 or self.max_concurrent < 1:
            raise ValueError("need at least one executor and one slot")
        self._load = [0] * self.executors

    @property
    def load(self) -> Sequence[int]:
        return tuple(self._load)

    def free_slots(self) -> int:
        return self.max_concurrent - len(self.running) - self._reserved

    def reserve_slots(self, limit: int) -> int:
        """Take every free slot, up to ``limit``, for the round about to pop the queue."""
        taken = max(0, min(limit, self.free_slots()))
        self._reserved += taken
        return taken

    def admit(self, reserved: int, popped: Iterable[tuple[str, Band]]) -> list[tuple[str, Band]]:
        """The popped orders to start (each once, none already running); the rest of the reserved
        slots are free again. Admitted orders count as running from now on."""
        fresh: list[tuple[str, Band]] = []
        for order_id, band in dict(popped).items():
            if order_id in self.running:
                self._deferred[order_id] = band  # queued again once the run under way ends
            elif len(fresh) < reserved:
                fresh.append((order_id, band))
                self.running.add(order_id)
        self._reserved -= reserved
        self.peak_running = max(self.peak_running, len(self.running))
        return fresh

    def from_stock(self, needed: int) -> int:
        """How many of ``needed`` tokens the stock covers (taken from it); the rest must be reserved."""
        taken = min(needed, self.stock)
        self.stock -= taken
        return taken

    def top_up(self) -> int:
        """How many tokens to take from the limiter now (the stock is half used or worse), else 0."""
        want = self.stock_size - self.stock
        return want if self.stock <= self.stock_size // 2 and want > 0 else 0

    def stocked(self, taken: int) -> None:
        self.stock += taken

    def assign(self, fresh: Sequence[tuple[str, Band]], waits: Sequence[float]) -> Round:
        """The round for the least-loaded executor; ``waits`` go, in order, to the orders whose band
        needs a token (the others start at once)."""
        index = min(range(self.executors), key=self._load.__getitem__)
        self._load[index] += len(fresh)
        self.dispatched += len(fresh)
        pending = iter(waits)
        return Round(index, [(order_id, next(pending) if band.needs_token else 0.0) for order_id, band in fresh])

    def release(self, order_ids: Iterable[str]) -> None:
        """Admitted orders that were not handed out (they go back to the queue): their slots are free."""
        self.running.difference_update(order_ids)

    def finished(self, executor: int, order_id: str) -> Band | None:
        """A run ended (answered or lost): its slot is free. Returns the band to queue the order in
        again if it was popped while this run was under way, else None."""
        self._load[executor] -= 1
        self.running.discard(order_id)
        return self._deferred.pop(order_id, None)

    def lost(self, order_id: str) -> bool:
        """A run was lost with its executor: True to queue the order again, False once its budget is
        spent (fail it instead)."""
        tries = self._redispatched[order_id] = self._redispatched.get(order_id, 0) + 1
        if tries > self.max_redispatch:
            self.given_up.add(order_id)
            return False
        return True

    def redispatches(self, order_id: str) -> int:
        return self._redispatched.get(order_id, 0)

    @property
    def redispatched(self) -> dict[str, int]:
        """Orders whose runs were lost, with how many times each was queued again (a copy)."""
        return dict(self._redispatched)

    def unaccounted(self, candidates: Iterable[str], queued: set[str]) -> list[str]:
        """Open orders (from the journal) that are neither queued, running nor given up: sweep suspects."""
        skip = self.running | queued | self.given_up
        return [order_id for order_id in candidates if order_id not in skip]

    def to_requeue(self, loaded: Iterable[Order]) -> list[Order]:
        """Of the suspects, freshly loaded, those still open, not running and not held by the watcher."""
        return [o for o in loaded if o.order_id not in self.running and not is_terminal(o.status) and not held_by_watcher(o)]
