"""The engine's metrics: one definition of each (name, help, labels, buckets), and this process's registry.

Counted where things happen, in whichever process they happen in: intake and HTTP in the ingress
replicas, orders and stages in the executors (:mod:`engine.stages`), venue calls in the quoters, store
errors in the adapters. Read live at scrape time (never counted): queue depth, open orders, rate-limiter
tokens, running and waiting orders, venue breaker states. docs/operations.md#metrics lists them all.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable
from enum import StrEnum
from typing import TypeVar

from engine.errors import VenueError
from engine.metrics import Kind, Metric, Registry

T = TypeVar("T")

REGISTRY = Registry()
"""This process's metrics (one per process, as each Ray actor and Serve replica is a process)."""


class Stage(StrEnum):
    """An order's stages, from its own event times (``oee_stage_seconds{stage}``)."""

    QUEUE_WAIT = "queue_wait"
    """pending (or triggered, for LIMIT/SNIPER) -> its first routing"""
    ROUTING = "routing"
    """routing -> building: quoting every venue and choosing"""
    BUILDING = "building"
    """building -> submitted: the decision made durable and the order claimed"""
    LANDING = "landing"
    """submitted -> confirmed: the swap(s) at the venue(s)"""
    END_TO_END = "end_to_end"
    """pending -> any terminal status"""


STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# --- counted in engine processes -------------------------------------------------------------------

ORDERS_SUBMITTED = REGISTRY.counter(
    Metric(
        "oee_orders_submitted_total", Kind.COUNTER, "Orders accepted at intake (a replayed Idempotency-Key is not counted)", ("order_type",)
    )
)
ORDERS_FINISHED = REGISTRY.counter(
    Metric("oee_orders_finished_total", Kind.COUNTER, "Orders that reached a terminal status", ("status", "order_type"))
)
STAGE_SECONDS = REGISTRY.histogram(
    Metric("oee_stage_seconds", Kind.HISTOGRAM, "Time orders spent in each stage, from their own event times", ("stage",), STAGE_BUCKETS)
)
RETRIES = REGISTRY.counter(Metric("oee_retries_total", Kind.COUNTER, "Order attempts after the first (routing with attempt > 1)"))
VENUE_REQUESTS = REGISTRY.counter(
    Metric(
        "oee_venue_requests_total",
        Kind.COUNTER,
        "Calls to a venue by operation and outcome (ok, or the kind of error)",
        ("venue", "operation", "outcome"),
    )
)
VENUE_SECONDS = REGISTRY.histogram(
    Metric("oee_venue_request_seconds", Kind.HISTOGRAM, "Latency of calls to a venue", ("venue", "operation"), REQUEST_BUCKETS)
)
VENUE_UNREACHABLE = REGISTRY.counter(
    Metric("oee_venue_unreachable_total", Kind.COUNTER, "Venue calls an executor could not deliver (the quoter actor was lost)", ("venue",))
)
STORE_ERRORS = REGISTRY.counter(
    Metric("oee_store_errors_total", Kind.COUNTER, "Store operations that failed with the store unavailable", ("store",))
)
HTTP_REQUESTS = REGISTRY.counter(
    Metric("oee_http_requests_total", Kind.COUNTER, "HTTP requests by route template, method and status", ("route", "method", "status"))
)
HTTP_SECONDS = REGISTRY.histogram(
    Metric("oee_http_request_seconds", Kind.HISTOGRAM, "HTTP request latency in the ingress replica", ("route", "method"), REQUEST_BUCKETS)
)
STALE_RUNS = REGISTRY.counter(
    Metric("oee_stale_runs_total", Kind.COUNTER, "Order runs stopped because a newer run claimed the order (fenced out)")
)
DISPATCHER_ACTIVE = REGISTRY.gauge(
    Metric("oee_dispatcher_active", Kind.GAUGE, "1 while this engine's dispatcher holds the dispatch lease, 0 on standby")
)
WEBSOCKETS = REGISTRY.gauge(Metric("oee_websocket_connections", Kind.GAUGE, "Open WebSocket connections"))

# series that exist from the start, so a rate over them is defined before the first event
RETRIES.inc(by=0)
STALE_RUNS.inc(by=0)
WEBSOCKETS.set(0)
for _store in ("redis", "postgres"):
    STORE_ERRORS.inc(_store, by=0)

# --- read live at scrape time --------------------------------------------------------------------

QUEUE_DEPTH = Metric("oee_queue_depth", Kind.GAUGE, "Orders in the dispatch queue (Redis)")
OPEN_ORDERS = Metric("oee_open_orders", Kind.GAUGE, "Orders not yet terminal (Redis active set)")
RATE_LIMITER_TOKENS = Metric(
    "oee_rate_limiter_tokens", Kind.GAUGE, "Order starts the rate limiter would allow now (negative: starts reserved ahead)"
)
ORDERS_RUNNING = Metric("oee_orders_running", Kind.GAUGE, "Orders holding an execution slot (the dispatcher's count)")
ORDERS_WAITING = Metric("oee_orders_waiting", Kind.GAUGE, "LIMIT and SNIPER orders the price watcher holds")
VENUE_BREAKER = Metric("oee_venue_breaker_state", Kind.GAUGE, "1 for each venue's circuit-breaker state", ("venue", "state"))
SOURCES = Metric("oee_metrics_sources", Kind.GAUGE, "Engine processes whose metrics are in this answer", ("role",))


_OUTCOMES: dict[type[BaseException], str] = {}


def outcome_of(error: BaseException | None) -> str:
    """``ok``, or the kind of a venue error (``transient_venue``, ``slippage_exceeded``, ``no_pool``...),
    ``cancelled``, or ``unexpected`` for anything else."""
    if error is None:
        return "ok"
    kind = type(error)
    known = _OUTCOMES.get(kind)
    if known is None:
        if issubclass(kind, VenueError):
            known = re.sub(r"(?<!^)(?=[A-Z])", "_", kind.__name__).lower().removesuffix("_error")
        elif issubclass(kind, asyncio.CancelledError):
            known = "cancelled"
        else:
            known = "unexpected"
        _OUTCOMES[kind] = known
    return known


async def measured(venue: str, operation: str, call: Awaitable[T]) -> T:
    """Await a venue call, counting it by outcome and timing it."""
    started = time.perf_counter()
    error: BaseException | None = None
    try:
        return await call
    except BaseException as exc:
        error = exc
        raise
    finally:
        VENUE_REQUESTS.inc(venue, operation, outcome_of(error))
        VENUE_SECONDS.observe(time.perf_counter() - started, venue, operation)
