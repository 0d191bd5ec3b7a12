"""Failover through the running gateway: retries, fallback targets, deadlines and circuit breakers,
driven with the openai SDK against fault-injecting upstreams (real loopback servers)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.testing.upstream import FakeUpstream, Reply
from support import audit_record_for, fake_provider, get, sdk_client, wait_until


def routed(upstream: FakeUpstream, backup: FakeUpstream, **route: Any) -> dict[str, Any]:
    """Overrides for `make_gateway`: gpt-test on the primary fake, then the backup fake."""
    return {
        "providers": {"fake": fake_provider(upstream.base_url), "backup": fake_provider(backup.base_url)},
        "models": {
            "gpt-test": {"targets": [{"provider": "fake", "model": "primary-model"}, {"provider": "backup", "model": "backup-model"}], **route},
            "mock-gpt": {"targets": [{"provider": "mock"}]},
        },
    }


def chat(gateway: Any, content: str = "hi") -> Any:
    with sdk_client(gateway) as client:
        return client.chat.completions.with_raw_response.create(model="gpt-test", messages=[{"role": "user", "content": content}])


def attempts(store_dir: Path, raw: Any) -> list[tuple[str, int | None, str | None]]:
    record = audit_record_for(store_dir, raw.headers["x-request-id"])
    return [(a["target"], a["status"], a["error"]) for a in record["route"]]


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (Reply(status=500), "upstream_status_500"),
        (Reply(status=503), "upstream_status_503"),
        (Reply(reset=True), "upstream_connect_error"),
        (Reply(body=b"<html>bad gateway</html>"), "upstream_bad_response"),
        (Reply(delay_s=3), "upstream_deadline_exceeded"),
    ],
)
def test_a_failing_target_falls_back_to_the_next(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream, store_dir: Path, failure: Reply, error: str) -> None:
    gateway = make_gateway(**routed(upstream, backup, attempt_timeout_s=1))
    upstream.enqueue(failure)
    raw = chat(gateway)
    assert raw.parse().choices[0].message.content == "echo: hi"
    assert raw.headers["x-gateway-target"] == "backup/backup-model"
    assert attempts(store_dir, raw)[0][0] == "fake/primary-model" and attempts(store_dir, raw)[0][2] == error
    assert attempts(store_dir, raw)[1] == ("backup/backup-model", 200, None)
    assert backup.received[-1].body["model"] == "backup-model"


def test_a_retry_on_the_same_target_comes_first(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream, store_dir: Path) -> None:
    gateway = make_gateway(**routed(upstream, backup, retry={"attempts": 2, "backoff_ms": 10}))
    upstream.enqueue(Reply(status=502))
    raw = chat(gateway)
    assert raw.headers["x-gateway-target"] == "fake/primary-model"
    assert [(t, s) for t, s, _ in attempts(store_dir, raw)] == [("fake/primary-model", 502), ("fake/primary-model", 200)]
    assert backup.received == []


def test_retry_after_is_honoured(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream, store_dir: Path) -> None:
    gateway = make_gateway(**routed(upstream, backup, retry={"attempts": 2, "backoff_ms": 1, "retry_on": ["429"]}))
    upstream.enqueue(Reply(status=429, headers={"retry-after": "1"}))
    started = time.monotonic()
    raw = chat(gateway)
    assert time.monotonic() - started >= 0.95
    assert [s for _, s, _ in attempts(store_dir, raw)] == [429, 200]


def test_a_request_the_provider_refuses_is_not_retried_elsewhere(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream) -> None:
    gateway = make_gateway(**routed(upstream, backup, retry={"attempts": 3}))
    upstream.enqueue(Reply(status=400, body={"error": {"message": "bad temperature", "type": "invalid_request_error"}}))
    with pytest.raises(openai.BadRequestError):
        chat(gateway)
    assert len(upstream.received) == 1 and backup.received == []


def test_when_every_target_fails_the_last_error_is_answered(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream, store_dir: Path) -> None:
    gateway = make_gateway(**routed(upstream, backup))
    upstream.enqueue(Reply(status=500))
    backup.enqueue(Reply(status=503))
    with pytest.raises(openai.APIStatusError) as caught:
        chat(gateway)
    assert caught.value.status_code == 502 and caught.value.response.json()["error"]["code"] == "upstream_status_503"


def test_the_route_deadline_bounds_retries_and_fallbacks(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream) -> None:
    gateway = make_gateway(**routed(upstream, backup, timeout_s=1, retry={"attempts": 5, "backoff_ms": 400}))
    upstream.default = Reply(status=500)
    backup.default = Reply(delay_s=5)
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        chat(gateway)
    assert time.monotonic() - started < 3
    assert caught.value.status_code == 504


def test_a_stream_falls_back_before_its_first_byte(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream, store_dir: Path) -> None:
    gateway = make_gateway(**routed(upstream, backup))
    upstream.enqueue(Reply(status=500))
    with sdk_client(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-test", stream=True, messages=[{"role": "user", "content": "go"}])
        text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
    assert text == "w0 w1 w2 w3 w4 " and raw.headers["x-gateway-target"] == "backup/backup-model"


def test_a_stream_that_breaks_after_its_first_byte_ends_with_an_error_not_a_fallback(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream, store_dir: Path) -> None:
    gateway = make_gateway(**routed(upstream, backup))
    upstream.enqueue(Reply(break_after=3))
    seen = []
    with sdk_client(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-test", stream=True, messages=[{"role": "user", "content": "go"}])
        with pytest.raises(openai.APIError):
            for chunk in raw.parse():
                seen.append(chunk)
    assert backup.received == []
    record = audit_record_for(store_dir, raw.headers["x-request-id"])
    assert record["outcome"] == "stream_error" and record["stream_chunks"] == len(seen)  # what the client got


def test_a_circuit_breaker_opens_skips_the_target_and_recovers(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream, store_dir: Path) -> None:
    gateway = make_gateway(**routed(upstream, backup), routing={"breaker": {"failures": 2, "open_s": 1}})
    upstream.enqueue(Reply(status=500), Reply(status=500))
    chat(gateway)
    chat(gateway)
    assert get(f"{gateway.url}/readyz").json()["targets"]["fake/primary-model"] == "open"
    skipped = chat(gateway)
    assert attempts(store_dir, skipped)[0] == ("fake/primary-model", None, "circuit_open")
    assert len(upstream.received) == 2  # the open breaker kept the third request away
    metrics = get(f"{gateway.url}/metrics").body.decode()
    assert 'gateway_circuit_breaker_state{target="fake/primary-model"} 2.0' in metrics
    time.sleep(1.1)
    probe = chat(gateway)  # half-open: one probe, which succeeds and closes the breaker
    assert probe.headers["x-gateway-target"] == "fake/primary-model"
    wait_until(lambda: get(f"{gateway.url}/readyz").json()["targets"]["fake/primary-model"] == "closed", what="the breaker to close")


def test_weighted_balancing_picks_the_first_target_by_weight(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream) -> None:
    overrides = routed(upstream, backup, balance="weighted")
    overrides["models"]["gpt-test"]["targets"][0]["weight"] = 0
    gateway = make_gateway(**overrides)
    for _ in range(5):
        assert chat(gateway).headers["x-gateway-target"] == "backup/backup-model"
    assert upstream.received == []


def test_retries_and_fallbacks_are_counted(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream) -> None:
    gateway = make_gateway(**routed(upstream, backup, retry={"attempts": 2, "backoff_ms": 1}))
    upstream.enqueue(Reply(status=500), Reply(status=500))
    chat(gateway)
    def counted() -> bool:
        text = get(f"{gateway.url}/metrics").body.decode()
        return (
            'gateway_route_retries_total{route="gpt-test"} 1.0' in text
            and 'gateway_route_fallbacks_total{route="gpt-test"} 1.0' in text
            and 'gateway_upstream_attempts_total{outcome="upstream_status_500",target="fake/primary-model"} 2.0' in text
            and 'gateway_upstream_attempts_total{outcome="ok",target="backup/backup-model"} 1.0' in text
        )
    wait_until(counted, what="the retry and the fallback in /metrics")
