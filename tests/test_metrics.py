"""The buffered recording in gateway.metrics must publish exactly what prometheus_client's observe() would."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import LATENCY_BUCKETS, OVERHEAD_BUCKETS, Metrics

# Values on, between, below and above the bucket bounds, and zero.
VALUES = [0.0, 0.00005, 0.0001, 0.0003, 0.001, 0.004, 0.1, 0.75, 2.5, 119.0, 120.0, 500.0]


def samples(exposition: bytes, name: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition.decode())
        if family.name == name
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def record(metrics: Metrics, total: float, upstream: float) -> None:
    metrics.exchange_finished(
        endpoint="chat/completions", model="m", status=200, decision="allow",
        total_s=total, upstream_s=upstream, provider="p", stream_chunks=3,
    )


def test_buffered_histograms_match_prometheus_observe() -> None:
    metrics = Metrics()
    reference = CollectorRegistry()
    latency = Histogram("gateway_request_duration_seconds", "", ["endpoint"], buckets=LATENCY_BUCKETS, registry=reference)
    overhead = Histogram("gateway_overhead_seconds", "", ["endpoint"], buckets=OVERHEAD_BUCKETS, registry=reference)
    for value in VALUES:
        record(metrics, value, 0.0)
        latency.labels("chat/completions").observe(value)
        overhead.labels("chat/completions").observe(value)
    metrics.flush()
    ours, theirs = metrics.exposition(), generate_latest(reference)
    for name in ("gateway_request_duration_seconds", "gateway_overhead_seconds"):
        assert samples(ours, name) == samples(theirs, name)
        assert samples(ours, name)[(f"{name}_count", (("endpoint", "chat/completions"),))] == len(VALUES)


def test_counters_and_gauge_appear_after_flush_and_accumulate() -> None:
    metrics = Metrics()
    record(metrics, 0.01, 0.005)
    record(metrics, 0.02, 0.01)
    metrics.upstream_error("p", "upstream_timeout")
    metrics.request_started()
    assert samples(metrics.exposition(), "gateway_requests") == {}  # nothing published before a flush
    metrics.flush()
    record(metrics, 0.03, 0.01)
    metrics.flush()
    exposition = metrics.exposition()
    labels = (("decision", "allow"), ("endpoint", "chat/completions"), ("model", "m"), ("status", "200"))
    assert samples(exposition, "gateway_requests")[("gateway_requests_total", labels)] == 3
    assert samples(exposition, "gateway_stream_chunks")[("gateway_stream_chunks_total", (("model", "m"),))] == 9
    assert samples(exposition, "gateway_upstream_errors")[("gateway_upstream_errors_total", (("kind", "upstream_timeout"), ("provider", "p")))] == 1
    assert samples(exposition, "gateway_in_flight_requests")[("gateway_in_flight_requests", ())] == 1
    upstream = samples(exposition, "gateway_upstream_duration_seconds")
    assert upstream[("gateway_upstream_duration_seconds_sum", (("provider", "p"),))] == 0.025


async def test_flushing_task_publishes_without_a_scrape_and_on_exit() -> None:
    metrics = Metrics()
    async with metrics.flushing():
        record(metrics, 0.01, 0.0)
        await asyncio.sleep(1.3)  # the background flush runs once a second
        assert samples(metrics.exposition(), "gateway_requests")
        record(metrics, 0.01, 0.0)
    total = samples(metrics.exposition(), "gateway_requests")
    assert sum(total.values()) == 2  # the last flush happens when the app stops
