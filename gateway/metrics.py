"""Prometheus metrics, correct across `--workers N` processes, at a few hundred nanoseconds per request.

Two concerns shape this module:

* **Several workers.** `gateway serve` sets PROMETHEUS_MULTIPROC_DIR before any worker starts (they are
  spawned, so each imports prometheus_client fresh); each worker writes its samples to memory-mapped
  files there and `/metrics` merges them, so a scrape sees the whole instance whichever worker answers.
* **The hot path.** prometheus_client takes a lock and (for histograms) walks the buckets in Python on
  every observation; with five observations per request that was a measurable share of the gateway's
  own CPU. Requests are therefore recorded into plain per-worker buffers (a dict increment, a bisect)
  and flushed into the prometheus metrics once a second by a background task, and by the worker that
  answers a scrape just before it reads. Other workers' samples are at most a second old in a scrape.
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from gateway.tasks import running

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
FLUSH_INTERVAL_S = 1.0
# Gateway-added latency is sub-millisecond; upstream latency is seconds. Each gets buckets that resolve it.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_INF = float("inf")
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
# A human decides in seconds to hours.
REVIEW_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
REVIEW_DEPTH_STATES = ("pending", "claimed", "dead")


class _HistogramBuffer:
    """Observations of one histogram child since the last flush: counts per bucket and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = (*bounds, _INF)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # The first bound >= value: the bucket prometheus_client's observe() would pick (value <= bound).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def drain_into(self, child: Any) -> None:
        """Adds the buffered observations to a prometheus Histogram child and empties the buffer.

        prometheus_client has no public bulk-observe; its per-bucket values (`_buckets`, `_sum`) are the
        same objects observe() increments, in memory or in the multiprocess files. tests/test_metrics.py
        compares the result with observe() itself, so a library change fails a test, not a scrape.
        """
        child._sum.inc(self.total)
        for index, count in enumerate(self.counts):
            if count:
                child._buckets[index].inc(count)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0


class Metrics:
    """All gateway metrics, created once per worker in the app factory and passed to the stages."""

    AUDIT_WRITE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

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
        self.in_flight_gauge = Gauge(
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
        self.policy_decisions = Counter(
            "gateway_policy_decisions_total", "Rules that fired, by policy, rule and verdict (block, would_block, error...).",
            ["policy", "rule", "verdict"], registry=registry,
        )
        self.policy_check_errors = Counter(
            "gateway_policy_check_errors_total", "Checks that failed or timed out, by policy, rule and on_error.",
            ["policy", "rule", "on_error"], registry=registry,
        )
        self.policy_reloads = Counter(
            "gateway_policy_reloads_total", "Policy bundle loads, by result (ok, failed, unchanged).",
            ["result"], registry=registry,
        )
        self.policy_version = Gauge(
            "gateway_policy_version_info", "1 for the policy bundle version live in this gateway.",
            ["version"], multiprocess_mode="max", registry=registry,
        )
        self.audit_records = Counter(
            "gateway_audit_records_total", "Audit records stored, by where: the backend (local, redis), spooled, replayed.",
            ["outcome"], registry=registry,
        )
        self.audit_write_latency = Histogram(
            "gateway_audit_write_seconds", "Time to store one batch of audit records in the backend.",
            ["backend"], buckets=self.AUDIT_WRITE_BUCKETS, registry=registry,
        )
        self.audit_queue_depth = Gauge(
            "gateway_audit_queue_depth", "Audit records waiting in memory (not yet in the backend or the spool).",
            multiprocess_mode="livesum", registry=registry,
        )
        self.audit_spool_bytes = Gauge(
            "gateway_audit_spool_bytes", "Bytes of audit records in the local spool, waiting for the backend.",
            multiprocess_mode="livesum", registry=registry,
        )
        self.audit_backend_up = Gauge(
            "gateway_audit_backend_up", "1 while the audit backend takes records, 0 while they are spooled.",
            multiprocess_mode="min", registry=registry,
        )
        self.audit_backlogged = Counter(
            "gateway_audit_backlogged_exchanges_total",
            "Exchanges served while the audit backlog was full (audit.on_unavailable: open); their records wait in memory.",
            registry=registry,
        )
        self.upstream_attempts = Counter(
            "gateway_upstream_attempts_total", "Calls to each target, by outcome (ok, or the error code).",
            ["target", "outcome"], registry=registry,
        )
        self.route_retries = Counter(
            "gateway_route_retries_total", "Upstream attempts retried on the same target, by route.", ["route"], registry=registry,
        )
        self.route_fallbacks = Counter(
            "gateway_route_fallbacks_total", "Exchanges that moved on to a route's next target, by route.", ["route"], registry=registry,
        )
        self.breaker_states = Gauge(
            "gateway_circuit_breaker_state", "Circuit breaker of each target: 0 closed, 1 half-open, 2 open.",
            ["target"], multiprocess_mode="livemax", registry=registry,
        )
        self.incident_switches = Gauge(
            "gateway_incident_switch", "1 while an operator's incident switch is on (scope: global or app:NAME; action: block or fallback).",
            ["scope", "action"], multiprocess_mode="livemax", registry=registry,
        )
        self.reviews_opened = Counter(
            "gateway_reviews_opened_total", "Exchanges escalated to a human review queue, by queue and phase.",
            ["queue", "phase"], registry=registry,
        )
        self.review_decisions = Counter(
            "gateway_review_decisions_total",
            "Reviews that ended: approve, reject, edit, or timeout_block / timeout_allow (on_timeout applied).",
            ["queue", "decision"], registry=registry,
        )
        self.review_time_to_decision = Histogram(
            "gateway_review_time_to_decision_seconds", "From escalation to the end of the review, by queue.",
            ["queue"], buckets=REVIEW_BUCKETS, registry=registry,
        )
        # Every worker reads the same shared queue, so the instance's value is any worker's (the freshest).
        self.review_queue_depth = Gauge(
            "gateway_review_queue_depth", "Reviews waiting in each queue, by state (pending, claimed, dead).",
            ["queue", "state"], multiprocess_mode="livemax", registry=registry,
        )
        self.review_oldest_pending = Gauge(
            "gateway_review_oldest_pending_seconds", "Age of the oldest pending review in each queue.",
            ["queue"], multiprocess_mode="livemax", registry=registry,
        )
        self.in_flight = 0
        self._counts: defaultdict[tuple[Counter, tuple[str, ...]], int] = defaultdict(int)
        self._histograms: dict[tuple[Histogram, str], _HistogramBuffer] = {}

    # -- recording (hot path: plain Python, no locks) ---------------------------------------------------
    def request_started(self) -> None:
        self.in_flight += 1

    def request_ended(self) -> None:
        self.in_flight -= 1

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
        self._counts[(self.requests, (endpoint, model, str(status), decision))] += 1
        self._observe(self.latency, endpoint, LATENCY_BUCKETS, total_s)
        self._observe(self.overhead, endpoint, OVERHEAD_BUCKETS, max(total_s - upstream_s, 0.0))
        if provider is not None:
            self._observe(self.upstream_latency, provider, LATENCY_BUCKETS, upstream_s)
        if stream_chunks:
            self._counts[(self.stream_chunks, (model,))] += stream_chunks

    def upstream_error(self, provider: str, kind: str) -> None:
        self._counts[(self.upstream_errors, (provider, kind))] += 1

    def policy_decision(self, policy: str, rule: str, verdict: str) -> None:
        self._counts[(self.policy_decisions, (policy, rule, verdict))] += 1

    def policy_check_error(self, policy: str, rule: str, on_error: str) -> None:
        self._counts[(self.policy_check_errors, (policy, rule, on_error))] += 1

    def policy_loaded(self, result: str, old_version: str | None, new_version: str | None) -> None:
        """A bundle load finished (rare: published at once, not buffered)."""
        self.policy_reloads.labels(result).inc()
        if new_version is not None and new_version != old_version:
            if old_version is not None:
                self.policy_version.labels(old_version).set(0)
            self.policy_version.labels(new_version).set(1)

    def audit_written(self, backend: str, records: int, seconds: float) -> None:
        self._counts[(self.audit_records, (backend,))] += records
        self._observe(self.audit_write_latency, backend, self.AUDIT_WRITE_BUCKETS, seconds)

    def upstream_attempt(self, target: str, outcome: str) -> None:
        self._counts[(self.upstream_attempts, (target, outcome))] += 1

    def route_retry(self, route: str) -> None:
        self._counts[(self.route_retries, (route,))] += 1

    def route_fallback(self, route: str) -> None:
        self._counts[(self.route_fallbacks, (route,))] += 1

    def breaker_state(self, target: str, state: str) -> None:
        """A breaker changed state (rare: published at once)."""
        self.breaker_states.labels(target).set(BREAKER_STATES[state])

    def incident_switch(self, scope: str, action: str, on: bool) -> None:
        """An incident switch went on or off (rare: published at once)."""
        self.incident_switches.labels(scope, action).set(1 if on else 0)

    def audit_backlogged_exchange(self) -> None:
        self._counts[(self.audit_backlogged, ())] += 1

    def audit_spooled(self, records: int) -> None:
        self._counts[(self.audit_records, ("spooled",))] += records

    def audit_replayed(self, records: int) -> None:
        self._counts[(self.audit_records, ("replayed",))] += records

    def audit_state(self, queue_depth: int, spool_bytes: int, backend_up: bool) -> None:
        """The writer's state after each cycle (gauges are cheap to set; the writer runs at most 50 times a second)."""
        self.audit_queue_depth.set(queue_depth)
        self.audit_spool_bytes.set(spool_bytes)
        self.audit_backend_up.set(1 if backend_up else 0)

    def review_opened(self, queue: str, phase: str) -> None:
        self.reviews_opened.labels(queue, phase).inc()  # rare: published at once, like the rest of the review queue

    def review_ended(self, queue: str, decision: str, seconds: float) -> None:
        self.review_decisions.labels(queue, decision).inc()
        self.review_time_to_decision.labels(queue).observe(max(seconds, 0.0))

    def review_depth(self, depths: dict[str, dict[str, float]]) -> None:
        """The queues' state as the store reports it (the review sweeper, every few seconds)."""
        for queue, depth in depths.items():
            for state in REVIEW_DEPTH_STATES:
                self.review_queue_depth.labels(queue, state).set(depth.get(state, 0.0))
            self.review_oldest_pending.labels(queue).set(depth.get("oldest_pending_s", 0.0))

    def _observe(self, histogram: Histogram, label: str, bounds: tuple[float, ...], value: float) -> None:
        buffer = self._histograms.get((histogram, label))
        if buffer is None:
            buffer = self._histograms[(histogram, label)] = _HistogramBuffer(bounds)
        buffer.observe(value)

    # -- publishing ---------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Moves the buffers into the prometheus metrics. Call on the event loop thread only."""
        counts, self._counts = self._counts, defaultdict(int)
        for (counter, labels), amount in counts.items():
            (counter.labels(*labels) if labels else counter).inc(amount)
        for (histogram, label), buffer in self._histograms.items():
            if buffer.total or any(buffer.counts):
                buffer.drain_into(histogram.labels(label))
        self.in_flight_gauge.set(self.in_flight)

    @asynccontextmanager
    async def flushing(self) -> AsyncIterator[None]:
        """Owns the once-a-second flush task for the app's lifetime; flushes a last time when it ends."""

        async def run() -> None:
            while True:
                await asyncio.sleep(FLUSH_INTERVAL_S)
                self.flush()

        try:
            async with running(run(), "metrics-flush"):
                yield
        finally:
            self.flush()

    def exposition(self) -> bytes:
        """The text exposition for `/metrics` (file reads in multiprocess mode: call it off the event loop)."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
