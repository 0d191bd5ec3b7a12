"""Operator endpoints: /healthz, /readyz and /metrics (Prometheus text), as a probe or scraper calls them."""

from __future__ import annotations

import openai
import pytest

from gateway import __version__
from gateway.policy.engine import EMPTY_BUNDLE_VERSION
from gateway.testing.threads import GatewayServer
from gateway.testing.upstream import FakeUpstream, Reply
from support import get, metric_names, metric_sum, parse_metrics, raw_request

USER = [{"role": "user", "content": "hi"}]


def scrape(gateway: GatewayServer) -> list:  # type: ignore[type-arg]
    response = get(f"{gateway.url}/metrics")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse_metrics(response.body.decode())


def test_healthz(gateway: GatewayServer) -> None:
    response = get(f"{gateway.url}/healthz")
    assert response.status == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-gateway-policy-version"] == EMPTY_BUNDLE_VERSION
    assert response.headers["x-request-id"]


def test_readyz(gateway: GatewayServer) -> None:
    response = get(f"{gateway.url}/readyz")
    assert response.status == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["policy_version"] == EMPTY_BUNDLE_VERSION
    assert body["version"] == __version__
    assert body["checks"] == {"audit": "ok"}
    assert body["models"] == ["gpt-test", "mock-embedding", "mock-gpt"]
    assert body["instance"]


def test_ops_endpoints_keep_the_client_request_id(gateway: GatewayServer) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        response = raw_request(f"{gateway.url}{path}", method="GET", headers={"x-request-id": "probe-7"})
        assert response.headers["x-request-id"] == "probe-7", path


def test_metrics_before_any_traffic(gateway: GatewayServer) -> None:
    samples = scrape(gateway)
    assert metric_sum(samples, "gateway_requests_total") == 0
    assert metric_sum(samples, "gateway_in_flight_requests") == 0


def test_metrics_after_traffic(client: openai.OpenAI, gateway: GatewayServer, upstream: FakeUpstream) -> None:
    client.chat.completions.create(model="gpt-test", messages=USER)
    client.chat.completions.create(model="mock-gpt", messages=USER)
    client.embeddings.create(model="mock-embedding", input="x")
    list(client.chat.completions.create(model="gpt-test", messages=USER, stream=True))
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="unknown-model", messages=USER)
    upstream.enqueue(Reply(status=500))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-test", messages=USER)
    upstream.enqueue(Reply(break_after=3))
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="gpt-test", messages=USER, stream=True))

    samples = scrape(gateway)
    requests = "gateway_requests_total"
    chat = "chat/completions"
    assert metric_sum(samples, requests, endpoint=chat, model="gpt-test", status="200", decision="allow") == 3  # incl. both streams
    assert metric_sum(samples, requests, endpoint=chat, model="mock-gpt", status="200", decision="allow") == 1
    assert metric_sum(samples, requests, endpoint="embeddings", model="mock-embedding", status="200") == 1
    assert metric_sum(samples, requests, endpoint=chat, model="unknown", status="400") == 1
    assert metric_sum(samples, requests, endpoint=chat, model="gpt-test", status="502") == 1
    assert metric_sum(samples, requests) == 7

    assert metric_sum(samples, "gateway_request_duration_seconds_count", endpoint=chat) == 6
    assert metric_sum(samples, "gateway_request_duration_seconds_count", endpoint="embeddings") == 1
    assert metric_sum(samples, "gateway_overhead_seconds_count") == 7
    assert metric_sum(samples, "gateway_overhead_seconds_sum") > 0
    assert metric_sum(samples, "gateway_upstream_duration_seconds_count", provider="fake") == 4
    assert metric_sum(samples, "gateway_upstream_duration_seconds_count", provider="mock") == 2
    assert metric_sum(samples, "gateway_upstream_errors_total", provider="fake", kind="upstream_status_500") == 1
    assert metric_sum(samples, "gateway_upstream_errors_total") == 1  # a stream that broke after it started is not an attempt failure
    assert metric_sum(samples, "gateway_stream_chunks_total", model="gpt-test") == 7 + 3  # full stream + 3 before the break
    assert metric_sum(samples, "gateway_in_flight_requests") == 0
    assert {"gateway_request_duration_seconds_bucket", "gateway_overhead_seconds_bucket", "gateway_upstream_duration_seconds_bucket"} <= metric_names(samples)


def test_upstream_errors_are_counted_by_kind(client: openai.OpenAI, gateway: GatewayServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(status=503), Reply(reset=True), Reply(body=b"junk"), Reply(status=401), Reply(status=400))
    for _ in range(5):
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="gpt-test", messages=USER)
    samples = scrape(gateway)
    kinds = {s.labels["kind"]: s.value for s in samples if s.name == "gateway_upstream_errors_total"}
    assert kinds == {
        "upstream_status_503": 1,
        "upstream_connect_error": 1,
        "upstream_bad_response": 1,
        "upstream_auth_failed": 1,
        "upstream_rejected": 1,
    }


def test_in_flight_gauge_counts_an_open_stream(client: openai.OpenAI, gateway: GatewayServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(chunk_delay_s=0.05, words=10))
    stream = client.chat.completions.create(model="gpt-test", messages=USER, stream=True)
    chunks = iter(stream)
    next(chunks)
    assert metric_sum(scrape(gateway), "gateway_in_flight_requests") == 1
    rest = list(chunks)
    assert rest[-1].choices[0].finish_reason == "stop"
    assert metric_sum(scrape(gateway), "gateway_in_flight_requests") == 0


def test_bad_input_is_counted(gateway: GatewayServer) -> None:
    raw_request(f"{gateway.base_url}/chat/completions", b"{not json", headers={"content-type": "application/json"})
    raw_request(f"{gateway.base_url}/chat/completions", b"{}", headers={"content-type": "text/plain"})
    samples = scrape(gateway)
    assert metric_sum(samples, "gateway_requests_total", endpoint="chat/completions", status="400") == 2
