"""Metrics as plain data: counters, gauges and histograms kept per process, and their merge across processes.

Each engine process counts into its own :class:`Registry` (a dict update per event: no lock, no I/O,
no actor call). A :class:`Snapshot` of it is a picklable copy. :class:`ClusterMetrics` merges the
snapshots of every process into one view of the engine: counters and histograms summed over processes
and kept monotonic when a process restarts (a restarted process is a new source, and the last totals of
the old one stay counted), gauges summed over the processes that reported lately.

Pure: no Ray, no HTTP, no Prometheus client. The edge renders :class:`Family` objects as Prometheus text.
"""

from __future__ import annotations

import uuid
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

Labels = tuple[str, ...]
"""Label values, in the order of :attr:`Metric.labels`."""


class Kind(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class Metric:
    """What a metric is: its name, kind, help text, label names and (histograms) bucket upper bounds."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Buckets:
    """One histogram series: the count in each bucket (not cumulative; the last is ``+Inf``) and the sum."""

    counts: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[int]:
        running, out = 0, []
        for count in self.counts:
            running += count
            out.append(running)
        return out

    def __add__(self, other: Buckets) -> Buckets:
        if len(other.counts) != len(self.counts):
            raise ValueError("histograms with different buckets cannot be added")
        return Buckets(tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)), self.total + other.total)


Value = float | Buckets


@dataclass(frozen=True)
class Family:
    """A metric and its series (label values -> value)."""

    metric: Metric
    samples: dict[Labels, Value]


@dataclass(frozen=True)
class Snapshot:
    """One process's registry at one moment. ``source`` names the process for its whole life (a restart
    is a new source); ``seq`` orders its snapshots; ``final`` says the process is stopping."""

    source: str
    role: str
    seq: int
    families: tuple[Family, ...]
    final: bool = False


class Counter:
    __slots__ = ("_values", "metric")

    def __init__(self, metric: Metric) -> None:
        self.metric = metric
        self._values: dict[Labels, float] = {}

    def inc(self, *labels: str, by: float = 1.0) -> None:
        values = self._values
        values[labels] = values.get(labels, 0.0) + by

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def family(self) -> Family:
        return Family(self.metric, _well_formed(self.metric, self._values.copy()))


class Gauge:
    __slots__ = ("_values", "metric")

    def __init__(self, metric: Metric) -> None:
        self.metric = metric
        self._values: dict[Labels, float] = {}

    def set(self, value: float, *labels: str) -> None:
        self._values[labels] = value

    def inc(self, *labels: str, by: float = 1.0) -> None:
        values = self._values
        values[labels] = values.get(labels, 0.0) + by

    def dec(self, *labels: str, by: float = 1.0) -> None:
        self.inc(*labels, by=-by)

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def family(self) -> Family:
        return Family(self.metric, _well_formed(self.metric, self._values.copy()))


class Histogram:
    """Observations in buckets (``value <= bound``, Prometheus' ``le``), a count and a sum per series."""

    __slots__ = ("_bounds", "_series", "metric")

    def __init__(self, metric: Metric) -> None:
        if not metric.buckets or list(metric.buckets) != sorted(set(metric.buckets)):
            raise ValueError(f"{metric.name}: buckets must be increasing and not empty")
        self.metric = metric
        self._bounds = metric.buckets
        self._series: dict[Labels, list[float]] = {}  # a count per bucket, then the +Inf bucket, then the sum

    def observe(self, value: float, *labels: str) -> None:
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = [0.0] * (len(self._bounds) + 2)
        series[bisect_left(self._bounds, value)] += 1
        series[-1] += value

    def value(self, *labels: str) -> Buckets:
        series = self._series.get(labels)
        if series is None:
            return Buckets((0,) * (len(self._bounds) + 1), 0.0)
        return _buckets(series)

    def family(self) -> Family:
        samples: dict[Labels, Value] = {labels: _buckets(series) for labels, series in self._series.copy().items()}
        return Family(self.metric, _well_formed(self.metric, samples))


def _buckets(series: list[float]) -> Buckets:
    copy = tuple(series)  # one C-level copy: a snapshot taken on another thread reads a consistent series
    return Buckets(tuple(int(c) for c in copy[:-1]), copy[-1])


def _well_formed(metric: Metric, samples: Mapping[Labels, Value]) -> dict[Labels, Value]:
    """Drop series counted with the wrong number of labels (a bug at a call site must not break a scrape)."""
    arity = len(metric.labels)
    return {labels: value for labels, value in samples.items() if len(labels) == arity}


Instrument = Counter | Gauge | Histogram
AnyInstrument = TypeVar("AnyInstrument", Counter, Gauge, Histogram)


class Registry:
    """This process's metrics. Getting an instrument twice gives the same one."""

    def __init__(self, source: str | None = None) -> None:
        self.source = source or uuid.uuid4().hex
        self._instruments: dict[str, Instrument] = {}
        self._seq = 0

    def counter(self, metric: Metric) -> Counter:
        return self._get(metric, Counter)

    def gauge(self, metric: Metric) -> Gauge:
        return self._get(metric, Gauge)

    def histogram(self, metric: Metric) -> Histogram:
        return self._get(metric, Histogram)

    def _get(self, metric: Metric, kind: type[AnyInstrument]) -> AnyInstrument:
        known = self._instruments.get(metric.name)
        if known is None:
            created = kind(metric)
            self._instruments[metric.name] = created
            return created
        if not isinstance(known, kind) or known.metric != metric:
            raise ValueError(f"{metric.name} is already registered differently")
        return known

    def snapshot(self, role: str = "", final: bool = False) -> Snapshot:
        """A copy of every metric, safe to take from another thread while counting goes on."""
        self._seq += 1
        families = tuple(instrument.family() for instrument in list(self._instruments.values()))
        return Snapshot(self.source, role, self._seq, families, final)


@dataclass
class _Source:
    snapshot: Snapshot
    seen_at: float


@dataclass
class ClusterMetrics:
    """The engine's metrics, merged from every process's snapshots.

    * Counters and histograms: the sum over every source ever seen, each at its latest snapshot. A
      restarted process reports as a new source, so the totals never go down. A source that says it is
      stopping (``final``), or that has been silent for ``forget_after_s``, is folded into the retired
      totals; a late snapshot from it is ignored (it would count twice).
    * Gauges: the sum over the sources seen within ``gauge_ttl_s`` (a gone process stops counting).

    ``now`` is the caller's clock (seconds); nothing here reads time.
    """

    gauge_ttl_s: float = 30.0
    forget_after_s: float = 3600.0
    _sources: dict[str, _Source] = field(default_factory=dict)
    _retired: dict[str, Family] = field(default_factory=dict)
    _retired_sources: set[str] = field(default_factory=set)

    def push(self, snapshot: Snapshot, now: float) -> bool:
        """Take a source's snapshot; False if it was stale (an older seq, or a retired source)."""
        if snapshot.source in self._retired_sources:
            return False
        known = self._sources.get(snapshot.source)
        if known is not None and snapshot.seq <= known.snapshot.seq:
            return False
        self._sources[snapshot.source] = _Source(snapshot, now)
        if snapshot.final:
            self._retire(snapshot.source)
        return True

    def sources(self, now: float) -> dict[str, str]:
        """Sources whose gauges count now: source -> role."""
        return {name: s.snapshot.role for name, s in self._sources.items() if now - s.seen_at <= self.gauge_ttl_s}

    def families(self, now: float) -> list[Family]:
        """Every metric, merged, sorted by name."""
        for name in [name for name, s in self._sources.items() if now - s.seen_at > self.forget_after_s]:
            self._retire(name)
        merged: dict[str, Family] = {name: Family(f.metric, dict(f.samples)) for name, f in self._retired.items()}
        for source in self._sources.values():
            fresh = now - source.seen_at <= self.gauge_ttl_s
            for family in source.snapshot.families:
                if family.metric.kind is Kind.GAUGE and not fresh:
                    continue
                _add(merged, family)
        return [merged[name] for name in sorted(merged)]

    def _retire(self, name: str) -> None:
        source = self._sources.pop(name)
        self._retired_sources.add(name)
        for family in source.snapshot.families:
            if family.metric.kind is not Kind.GAUGE:
                _add(self._retired, family)


def _add(into: dict[str, Family], family: Family) -> None:
    """Add ``family``'s samples into ``into`` (same name: summed series by series)."""
    known = into.get(family.metric.name)
    if known is None:
        into[family.metric.name] = Family(family.metric, dict(family.samples))
        return
    if known.metric.kind is not family.metric.kind or known.metric.labels != family.metric.labels:
        return  # another version's idea of this metric: keep the first one seen
    samples = known.samples
    for labels, value in family.samples.items():
        current = samples.get(labels)
        if current is None:
            samples[labels] = value
        elif isinstance(current, Buckets) and isinstance(value, Buckets):
            if len(current.counts) == len(value.counts):
                samples[labels] = current + value
        elif not isinstance(current, Buckets) and not isinstance(value, Buckets):
            samples[labels] = current + value


def merge(families: Iterable[Family]) -> list[Family]:
    """Families with the same name summed into one, sorted by name."""
    merged: dict[str, Family] = {}
    for family in families:
        _add(merged, family)
    return [merged[name] for name in sorted(merged)]
