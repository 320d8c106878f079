"""The engine's metrics, cluster-wide: one collector actor, and the reporter of each Serve replica.

Every process counts into its own registry (:data:`engine.instruments.REGISTRY`). The
:class:`MetricsCollector` (a singleton) merges them (:class:`engine.metrics.ClusterMetrics`): at each
scrape it asks the engine's actors for their snapshots (``metrics_snapshot``, which every
:class:`actors.base.EngineActor` and quoter answers) and reads what is only known live (rate-limiter
tokens, running and waiting orders, venue breaker states). Serve replicas cannot be listed, so each
pushes its snapshot every ``OEE_METRICS_PUSH_S`` through a :class:`Reporter`, and once more when it
stops; the replica answering ``/metrics`` sends its own with the scrape, so it is never stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable
from typing import Any

import ray

from engine.gc_tuning import tune_garbage_collection
from engine.instruments import ORDERS_RUNNING, ORDERS_WAITING, RATE_LIMITER_TOKENS, REGISTRY, SOURCES, VENUE_BREAKER
from engine.metrics import ClusterMetrics, Family, Labels, Registry, Snapshot, Value
from engine.models import VenueName

log = logging.getLogger("actors.metrics")

ASK_TIMEOUT_S = 2.0
"""How long a scrape waits for one actor; one that does not answer counts with its last snapshot."""
PUSH_TIMEOUT_S = 5.0


class MetricsCollector:
    def __init__(
        self,
        hub: Any,
        limiter: Any,
        dispatcher: Any,
        watcher: Any,
        executors: list[Any],
        venues: dict[VenueName, Any],
        gauge_ttl_s: float = 30.0,
    ) -> None:
        tune_garbage_collection()
        self._merged = ClusterMetrics(gauge_ttl_s=gauge_ttl_s)
        self._hub = hub
        self._limiter = limiter
        self._dispatcher = dispatcher
        self._watcher = watcher
        self._venues = venues
        self._sources = [dispatcher, watcher, *executors, *venues.values()]

    def push(self, snapshot: Snapshot) -> bool:
        """A replica's snapshot (its periodic push, or its last one when it stops)."""
        return self._merged.push(snapshot, time.monotonic())

    async def scrape(self, snapshot: Snapshot | None = None) -> list[Family]:
        """Every engine process's metrics merged, with ``snapshot`` (the asking replica's) taken first."""
        if snapshot is not None:
            self.push(snapshot)
        pulled, live = await asyncio.gather(
            asyncio.gather(*(_ask(source.metrics_snapshot.remote()) for source in self._sources)), self._live()
        )
        now = time.monotonic()
        for answer in pulled:
            if isinstance(answer, Snapshot):
                self._merged.push(answer, now)
        roles: dict[Labels, Value] = {(role,): float(n) for role, n in Counter(self._merged.sources(now).values()).items()}
        return sorted([*self._merged.families(now), *live, Family(SOURCES, roles)], key=lambda f: f.metric.name)

    async def _live(self) -> list[Family]:
        """What is read at scrape time, not counted: each read that fails is left out."""
        names = list(self._venues)
        breaker_calls = [_breaker(self._venues[name]) for name in names]
        tokens, dispatcher, watcher, *breakers = await asyncio.gather(
            _ask(self._limiter.level.remote()),
            _ask(self._dispatcher.stats.remote()),
            _ask(self._watcher.stats.remote()),
            *breaker_calls,
        )
        families: list[Family] = []
        if isinstance(tokens, int | float):
            families.append(Family(RATE_LIMITER_TOKENS, {(): float(tokens)}))
        if isinstance(dispatcher, dict) and "running" in dispatcher:
            families.append(Family(ORDERS_RUNNING, {(): float(dispatcher["running"])}))
        if isinstance(watcher, dict) and "watching" in watcher:
            families.append(Family(ORDERS_WAITING, {(): float(watcher["watching"])}))
        states: dict[Labels, Value] = {}
        for name, state in zip(names, breakers, strict=True):
            if state is not None:
                states[(name, state)] = 1.0
        if states:
            families.append(Family(VENUE_BREAKER, states))
        return families

    def sources(self) -> dict[str, str]:
        """Processes reporting now: source -> role (for tests and debugging)."""
        return self._merged.sources(time.monotonic())


async def _ask(call: Awaitable[Any]) -> Any:
    """An actor call's answer, or None if it failed or took longer than :data:`ASK_TIMEOUT_S`."""
    try:
        return await asyncio.wait_for(call, ASK_TIMEOUT_S)
    except Exception:  # a lost or restarting actor: its gauges are left out, its counters keep their last value
        return None


async def _breaker(venue: Any) -> str | None:
    """The venue's circuit-breaker state, if its quoter has a breaker (``breaker_state()``)."""
    method = getattr(venue, "breaker_state", None)
    if method is None:
        return None
    answer = await _ask(method.remote())
    if isinstance(answer, dict):
        answer = answer.get("state")
    if isinstance(answer, str) and answer:
        return str(answer).lower()  # a StrEnum's str() is its value
    return None


class Reporter:
    """Pushes this process's registry to the collector every ``interval_s`` from a thread of its own
    (so a busy event loop never delays it and counting never waits for it), and once more on :meth:`stop`."""

    def __init__(self, collector: Any, role: str, interval_s: float, registry: Registry = REGISTRY) -> None:
        self.collector = collector
        self.role = role
        self.interval_s = interval_s
        self.registry = registry
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="oee-metrics-reporter", daemon=True)
        self._failing = False

    def start(self) -> Reporter:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._push(final=False)
        self._push(final=True)

    def _push(self, final: bool) -> None:
        try:
            ray.get(self.collector.push.remote(self.registry.snapshot(self.role, final)), timeout=PUSH_TIMEOUT_S)
        except Exception as exc:  # the collector is restarting: the next push carries the same totals
            if not self._failing:
                log.warning("metrics push failed", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
            self._failing = True
        else:
            self._failing = False

    async def scrape(self) -> list[Family]:
        """The engine's metrics, this process's as of now."""
        families: list[Family] = await self.collector.scrape.remote(self.registry.snapshot(self.role))
        return families

    def stop(self) -> None:
        """Stop pushing after a last snapshot that tells the collector this process is gone (sent from the
        reporter's thread: the caller, an event loop, never blocks in ``ray.get``); waits for it a moment."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(PUSH_TIMEOUT_S)


_reporter: Reporter | None = None


def report_to(collector: Any, role: str, interval_s: float) -> Reporter | None:
    """Start this process's reporter (once per process); None without a collector (tests, local mode)."""
    global _reporter
    if collector is None:
        return None
    if _reporter is None:
        _reporter = Reporter(collector, role, interval_s).start()
    return _reporter


def reporter() -> Reporter | None:
    """This process's reporter, if :func:`report_to` started one."""
    return _reporter


def stop_reporting() -> None:
    global _reporter
    if _reporter is not None:
        with contextlib.suppress(Exception):
            _reporter.stop()
        _reporter = None
