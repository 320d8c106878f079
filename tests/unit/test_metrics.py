"""The metrics registry and the cluster merge: counters summed over processes and monotonic across a
restart, histograms merged bucket by bucket, gauges that expire with their process."""

from __future__ import annotations

import pickle

import pytest

from engine.metrics import Buckets, ClusterMetrics, Family, Kind, Metric, Registry, Snapshot, Value, merge

ORDERS = Metric("t_orders_total", Kind.COUNTER, "orders", ("order_type",))
SOCKETS = Metric("t_sockets", Kind.GAUGE, "sockets")
LATENCY = Metric("t_latency_seconds", Kind.HISTOGRAM, "latency", ("stage",), (0.1, 1.0, 10.0))


def process(source: str) -> Registry:
    registry = Registry(source)
    registry.counter(ORDERS)
    registry.gauge(SOCKETS)
    registry.histogram(LATENCY)
    return registry


def totals(cluster: ClusterMetrics, now: float) -> dict[str, dict[tuple[str, ...], Value]]:
    return {family.metric.name: family.samples for family in cluster.families(now)}


# --------------------------------------------------------------------------- one process


def test_counter_gauge_and_histogram_count_by_labels() -> None:
    registry = process("p")
    registry.counter(ORDERS).inc("MARKET")
    registry.counter(ORDERS).inc("MARKET", by=2)
    registry.counter(ORDERS).inc("LIMIT")
    registry.gauge(SOCKETS).inc()
    registry.gauge(SOCKETS).inc()
    registry.gauge(SOCKETS).dec()
    for seconds in (0.05, 0.1, 0.5, 3.0, 99.0):
        registry.histogram(LATENCY).observe(seconds, "routing")

    assert registry.counter(ORDERS).value("MARKET") == 3.0
    assert registry.counter(ORDERS).value("LIMIT") == 1.0
    assert registry.gauge(SOCKETS).value() == 1.0
    # le semantics: 0.1 falls in the 0.1 bucket; 99 in +Inf
    routing = registry.histogram(LATENCY).value("routing")
    assert routing.counts == (2, 1, 1, 1) and routing.total == pytest.approx(102.65)
    assert registry.histogram(LATENCY).value("routing").cumulative() == [2, 3, 4, 5]
    assert registry.histogram(LATENCY).value("routing").count == 5


def test_the_same_metric_is_one_instrument_and_a_conflicting_one_is_refused() -> None:
    registry = Registry("p")
    assert registry.counter(ORDERS) is registry.counter(ORDERS)
    with pytest.raises(ValueError, match="already registered"):
        registry.gauge(Metric("t_orders_total", Kind.GAUGE, "orders"))
    with pytest.raises(ValueError, match="buckets"):
        registry.histogram(Metric("t_bad", Kind.HISTOGRAM, "bad", (), (1.0, 0.5)))


def test_a_snapshot_is_a_picklable_copy_with_a_growing_seq() -> None:
    registry = process("p")
    registry.counter(ORDERS).inc("MARKET")
    first = registry.snapshot("Ingress")
    registry.counter(ORDERS).inc("MARKET")
    second = pickle.loads(pickle.dumps(registry.snapshot("Ingress")))

    assert (first.source, first.role, first.seq) == ("p", "Ingress", 1)
    assert second.seq == 2
    assert {f.metric.name: f.samples for f in first.families}["t_orders_total"] == {("MARKET",): 1.0}
    assert {f.metric.name: f.samples for f in second.families}["t_orders_total"] == {("MARKET",): 2.0}


def test_series_counted_with_the_wrong_number_of_labels_are_left_out_of_snapshots() -> None:
    registry = process("p")
    registry.counter(ORDERS).inc("MARKET")
    registry.counter(ORDERS).inc()  # a bug at a call site: no label
    samples = {f.metric.name: f.samples for f in registry.snapshot().families}["t_orders_total"]
    assert samples == {("MARKET",): 1.0}


# --------------------------------------------------------------------------- the merge


def test_counters_and_histograms_are_summed_across_sources() -> None:
    a, b = process("a"), process("b")
    a.counter(ORDERS).inc("MARKET", by=3)
    b.counter(ORDERS).inc("MARKET", by=4)
    b.counter(ORDERS).inc("LIMIT")
    a.histogram(LATENCY).observe(0.5, "routing")
    b.histogram(LATENCY).observe(5.0, "routing")
    cluster = ClusterMetrics()
    cluster.push(a.snapshot(), now=0.0)
    cluster.push(b.snapshot(), now=0.0)

    merged = totals(cluster, now=1.0)
    assert merged["t_orders_total"] == {("MARKET",): 7.0, ("LIMIT",): 1.0}
    assert merged["t_latency_seconds"] == {("routing",): Buckets((0, 1, 1, 0), 5.5)}


def test_a_newer_snapshot_replaces_its_source_and_an_older_one_is_ignored() -> None:
    a = process("a")
    a.counter(ORDERS).inc("MARKET")
    old = a.snapshot()
    a.counter(ORDERS).inc("MARKET")
    new = a.snapshot()
    cluster = ClusterMetrics()

    assert cluster.push(new, now=0.0)
    assert not cluster.push(old, now=0.1)  # arrived late (a push overtaken by a scrape)
    assert totals(cluster, now=1.0)["t_orders_total"] == {("MARKET",): 2.0}


def test_totals_stay_monotonic_when_a_process_restarts() -> None:
    """A restarted process counts from zero under a new source; the old one's last totals stay counted."""
    before = process("executor-pid-1")
    before.counter(ORDERS).inc("MARKET", by=10)
    before.histogram(LATENCY).observe(0.5, "routing")
    cluster = ClusterMetrics(gauge_ttl_s=30.0)
    cluster.push(before.snapshot(), now=0.0)
    seen = [totals(cluster, now=1.0)["t_orders_total"][("MARKET",)]]

    after = process("executor-pid-2")  # the restart: a new process, its registry empty
    cluster.push(after.snapshot(), now=2.0)
    seen.append(totals(cluster, now=2.0)["t_orders_total"][("MARKET",)])
    after.counter(ORDERS).inc("MARKET", by=2)
    cluster.push(after.snapshot(), now=3.0)
    seen.append(totals(cluster, now=3.0)["t_orders_total"][("MARKET",)])
    seen.append(totals(cluster, now=100.0)["t_orders_total"][("MARKET",)])  # long after the old one went quiet

    assert seen == [10.0, 10.0, 12.0, 12.0]
    assert totals(cluster, now=100.0)["t_latency_seconds"][("routing",)] == Buckets((0, 1, 0, 0), 0.5)


def test_a_final_snapshot_retires_its_source_counts_kept_gauges_dropped() -> None:
    replica = process("replica-1")
    replica.counter(ORDERS).inc("MARKET", by=5)
    replica.gauge(SOCKETS).set(7)
    cluster = ClusterMetrics()
    cluster.push(replica.snapshot(), now=0.0)
    assert totals(cluster, now=1.0)["t_sockets"] == {(): 7.0}

    replica.counter(ORDERS).inc("MARKET")
    cluster.push(replica.snapshot(final=True), now=2.0)
    merged = totals(cluster, now=3.0)
    assert merged["t_orders_total"] == {("MARKET",): 6.0}
    assert merged.get("t_sockets", {}) == {}
    assert cluster.sources(now=3.0) == {}
    # a late push from the retired source would count it twice: ignored
    assert not cluster.push(replica.snapshot(), now=4.0)
    assert totals(cluster, now=4.0)["t_orders_total"] == {("MARKET",): 6.0}


def test_gauges_are_summed_over_live_sources_and_expire() -> None:
    a, b = process("a"), process("b")
    a.gauge(SOCKETS).set(3)
    b.gauge(SOCKETS).set(4)
    cluster = ClusterMetrics(gauge_ttl_s=30.0)
    cluster.push(a.snapshot("Ingress"), now=0.0)
    cluster.push(b.snapshot("Ingress"), now=20.0)

    assert totals(cluster, now=25.0)["t_sockets"] == {(): 7.0}
    assert totals(cluster, now=40.0)["t_sockets"] == {(): 4.0}  # a is silent for 40 s: its gauge is gone
    assert totals(cluster, now=60.0).get("t_sockets", {}) == {}
    assert cluster.sources(now=40.0) == {"b": "Ingress"}


def test_a_source_silent_for_long_is_folded_into_the_retired_totals() -> None:
    a = process("a")
    a.counter(ORDERS).inc("MARKET", by=2)
    cluster = ClusterMetrics(gauge_ttl_s=30.0, forget_after_s=600.0)
    cluster.push(a.snapshot(), now=0.0)

    assert totals(cluster, now=601.0)["t_orders_total"] == {("MARKET",): 2.0}
    assert not cluster.push(a.snapshot(), now=602.0)  # back after it was folded: not counted twice
    assert totals(cluster, now=603.0)["t_orders_total"] == {("MARKET",): 2.0}


def test_a_metric_redefined_by_another_version_keeps_the_first_definition() -> None:
    other = Metric("t_orders_total", Kind.GAUGE, "orders, as a gauge")
    merged = merge([Family(ORDERS, {("MARKET",): 1.0}), Family(other, {(): 5.0}), Family(ORDERS, {("MARKET",): 2.0})])
    assert merged == [Family(ORDERS, {("MARKET",): 3.0})]


def test_histograms_with_other_buckets_are_not_added() -> None:
    three = Buckets((1, 0, 0, 0), 0.05)
    with pytest.raises(ValueError, match="different buckets"):
        _ = three + Buckets((1, 0), 0.05)
    merged = merge([Family(LATENCY, {("x",): three}), Family(LATENCY, {("x",): Buckets((1, 0), 0.05)})])
    assert merged[0].samples == {("x",): three}


def test_snapshots_cross_processes_intact() -> None:
    a = process("a")
    a.histogram(LATENCY).observe(0.2, "landing")
    snapshot = pickle.loads(pickle.dumps(a.snapshot("OrderExecutor")))
    assert isinstance(snapshot, Snapshot)
    cluster = ClusterMetrics()
    cluster.push(snapshot, now=0.0)
    assert totals(cluster, now=0.0)["t_latency_seconds"] == {("landing",): Buckets((0, 1, 0, 0), 0.2)}
