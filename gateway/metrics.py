"""Prometheus metrics, correct across `--workers N` processes (prometheus-client multiprocess mode).

`gateway serve` sets PROMETHEUS_MULTIPROC_DIR before any worker imports prometheus_client; each worker
then writes its samples to memory-mapped files there and `/metrics` merges them, so a scrape sees the
whole instance whichever worker answers it.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Gateway-added latency is sub-millisecond; upstream latency is seconds. Each gets buckets that resolve it.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """All gateway metrics, created once per worker in the app factory and passed to the stages."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # In multiprocess mode samples live in files; the registry used to scrape is built per scrape.
        self.registry = CollectorRegistry(auto_describe=True)
        registry = None if self.multiprocess else self.registry
        self.requests = Counter(
            "gateway_requests_total", "Requests answered, by endpoint, public model, HTTP status and decision.",
            ["endpoint", "model", "status", "decision"], registry=registry,
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds", "Total time from request received to response finished.",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.upstream_latency = Histogram(
            "gateway_upstream_duration_seconds", "Time spent waiting on providers, per exchange.",
            ["provider"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.overhead = Histogram(
            "gateway_overhead_seconds", "Gateway-added time: total minus time waiting on providers.",
            ["endpoint"], buckets=OVERHEAD_BUCKETS, registry=registry,
        )
        self.in_flight = Gauge(
            "gateway_in_flight_requests", "Requests being handled now.",
            multiprocess_mode="livesum", registry=registry,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors_total", "Failed upstream attempts, by provider and kind.",
            ["provider", "kind"], registry=registry,
        )
        self.stream_chunks = Counter(
            "gateway_stream_chunks_total", "Streamed reply chunks relayed to clients.",
            ["model"], registry=registry,
        )

        # `labels()` validates and locks on every call; the label sets are few, so keep the children.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def exchange_finished(
        self,
        *,
        endpoint: str,
        model: str,
        status: int,
        decision: str,
        total_s: float,
        upstream_s: float,
        provider: str | None,
        stream_chunks: int,
    ) -> None:
        """Everything recorded once per answered request."""
        self._child(self.requests, endpoint, model, str(status), decision).inc()
        self._child(self.latency, endpoint).observe(total_s)
        self._child(self.overhead, endpoint).observe(max(total_s - upstream_s, 0.0))
        if provider is not None:
            self._child(self.upstream_latency, provider).observe(upstream_s)
        if stream_chunks:
            self._child(self.stream_chunks, model).inc(stream_chunks)

    def upstream_error(self, provider: str, kind: str) -> None:
        self._child(self.upstream_errors, provider, kind).inc()

    def exposition(self) -> bytes:
        """The text exposition for `/metrics` (file reads in multiprocess mode: call it off the event loop)."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
