"""Metrics: ``GET /metrics`` in Prometheus' text format, for the whole engine, whichever replica answers.

The merged metrics of every engine process come from the collector actor (:mod:`actors.metrics`); the
queue depth and the open orders are read from Redis here, at scrape time. Without a collector (a replica
started on its own, in tests) the answer holds this process's metrics only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from actors.metrics import reporter
from api.auth import Reader
from api.deps import edge
from api.errors import error_response
from api.schemas import ErrorBody
from engine.instruments import OPEN_ORDERS, QUEUE_DEPTH, REGISTRY
from engine.metrics import Buckets, Family, Kind, merge

router = APIRouter(tags=["metrics"])
log = logging.getLogger("api.metrics")

_le: Callable[[float], str] = floatToGoString  # a bucket bound as Prometheus writes it ("0.005", "+Inf")

REDIS_TIMEOUT_S = 2.0
COLLECTOR_TIMEOUT_S = 10.0


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format (version 0.0.4)"},
        503: {"model": ErrorBody, "description": "The metrics collector did not answer"},
    },
    summary="The engine's metrics in Prometheus text format, cluster-wide",
)
async def metrics(who: Reader) -> Response:
    """Needs a key with ``read`` when keys are on (a scraper sends it as a Bearer token)."""
    families = await _engine_families()
    if families is None:
        return error_response(503, "Service unavailable", "the metrics collector did not answer; try again")
    families = merge([*families, *await _store_families()])
    return Response(generate_latest(_Exposition(families)), media_type=CONTENT_TYPE_PLAIN_0_0_4)


async def _engine_families() -> list[Family] | None:
    """Every engine process's metrics, merged by the collector; this process's alone without one."""
    here = reporter()
    if here is None:
        return list(REGISTRY.snapshot().families)
    try:
        return await asyncio.wait_for(here.scrape(), COLLECTOR_TIMEOUT_S)
    except Exception as exc:  # a scrape that fails is a 503, never counters that jump back
        log.warning("metrics collector did not answer", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
        return None


async def _store_families() -> list[Family]:
    """Queue depth and open orders from Redis; left out while Redis does not answer."""
    try:
        orders = (await edge().ready()).orders
        depth, open_orders = await asyncio.gather(_within(orders.queued()), _within(orders.active_count()), return_exceptions=True)
    except Exception:  # no edge installed, or stores not configured: nothing to read
        return []
    found = []
    if isinstance(depth, int):
        found.append(Family(QUEUE_DEPTH, {(): float(depth)}))
    if isinstance(open_orders, int):
        found.append(Family(OPEN_ORDERS, {(): float(open_orders)}))
    return found


async def _within(call: Awaitable[int]) -> int:
    return int(await asyncio.wait_for(call, REDIS_TIMEOUT_S))


class _Exposition:
    """Families as prometheus_client's metric families, for its text writer."""

    def __init__(self, families: list[Family]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            metric = family.metric
            labels = list(metric.labels)
            out: CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily
            if metric.kind is Kind.HISTOGRAM:
                out = HistogramMetricFamily(metric.name, metric.help, labels=labels)
                bounds = [_le(b) for b in metric.buckets] + ["+Inf"]
                for values, value in sorted(family.samples.items()):
                    if isinstance(value, Buckets) and len(value.counts) == len(bounds):
                        out.add_metric(list(values), list(zip(bounds, value.cumulative(), strict=True)), value.total)
            else:
                kind = CounterMetricFamily if metric.kind is Kind.COUNTER else GaugeMetricFamily
                out = kind(metric.name, metric.help, labels=labels)
                for values, value in sorted(family.samples.items()):
                    if not isinstance(value, Buckets):
                        out.add_metric(list(values), value)
            yield out
