"""Order metrics from the order's own transitions: finished orders, retries and stage latencies.

:class:`OrderMetrics` is the :class:`engine.ports.RunObserver` the executor hands to the workflow. Each
stage is timed from the events' own times (``at``, epoch ms), so it measures what the order's trail
says, not when a process happened to look:

* queue wait: pending (or triggered, for a LIMIT/SNIPER order) -> first routing
* routing: routing -> building; building: building -> submitted; landing: submitted -> confirmed
* end to end: pending -> any terminal status

A stage is observed when both of its ends were seen by the same run (a run resumed after a crash has
no start for the stage it resumes in); queue wait and end to end start from the order's own fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.instruments import ORDERS_FINISHED, RETRIES, STAGE_SECONDS, Stage
from engine.lifecycle import is_terminal
from engine.models import Order, OrderEvent, OrderStatus

S = OrderStatus

KEEP = 10_000
"""Orders whose stage marks are kept at most (a run that stops mid-way never pops its marks)."""


@dataclass(slots=True)
class _Marks:
    routing_at: float | None = None
    building_at: float | None = None
    submitted_at: float | None = None


def _seconds(start_ms: float, end_ms: float) -> float:
    return max(0.0, end_ms - start_ms) / 1000.0  # clocks of two nodes may disagree by a little


class OrderMetrics:
    def __init__(self, keep: int = KEEP) -> None:
        self._marks: dict[str, _Marks] = {}
        self._keep = keep

    def _mark(self, order_id: str) -> _Marks:
        marks = self._marks.get(order_id)
        if marks is None:
            if len(self._marks) >= self._keep:
                del self._marks[next(iter(self._marks))]  # the oldest
            marks = self._marks[order_id] = _Marks()
        return marks

    def transition(self, order: Order, event: OrderEvent) -> None:
        status, at = event.status, event.at
        if status is S.ROUTING:
            if order.attempts <= 1:
                STAGE_SECONDS.observe(_seconds(order.triggered_at or order.submitted_at, at), Stage.QUEUE_WAIT.value)
            else:
                RETRIES.inc()
            self._mark(order.order_id).routing_at = at
        elif status is S.BUILDING:
            marks = self._mark(order.order_id)
            if marks.routing_at is not None:
                STAGE_SECONDS.observe(_seconds(marks.routing_at, at), Stage.ROUTING.value)
            marks.building_at = at
        elif status is S.SUBMITTED:
            marks = self._mark(order.order_id)
            if marks.building_at is not None:
                STAGE_SECONDS.observe(_seconds(marks.building_at, at), Stage.BUILDING.value)
            marks.submitted_at = at
        elif status is S.CONFIRMED:
            marks = self._marks.get(order.order_id) or _Marks()
            if marks.submitted_at is not None:
                STAGE_SECONDS.observe(_seconds(marks.submitted_at, at), Stage.LANDING.value)
        if is_terminal(status):
            ORDERS_FINISHED.inc(status.value, str(order.order_type))
            STAGE_SECONDS.observe(_seconds(order.submitted_at, at), Stage.END_TO_END.value)
            self._marks.pop(order.order_id, None)
        elif status is S.WAITING:
            self._marks.pop(order.order_id, None)  # the watcher holds it; a later run starts afresh

    def tracked(self) -> int:
        return len(self._marks)
