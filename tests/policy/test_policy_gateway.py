"""Policies enforced by the running gateway, driven with the openai SDK against a real fake upstream."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.testing.upstream import FakeUpstream, Reply
from policy_support import write_policies
from support import audit_record_for, get, read_audit, sdk_client, wait_until

BLOCK_AND_MASK = """
rules:
  - id: no-plutonium
    phase: [request, response]
    check: {keywords: {words: [plutonium]}}
    action: block
    message: Nuclear materials are off topic.
  - id: mask-email
    phase: request
    check: {pii: {entities: [EMAIL]}}
    action: redact
    restore: true
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """Where the `make_gateway` configs look for policies (see tests/conftest.py)."""
    return tmp_path / "policies"


def error_body(error: openai.APIStatusError) -> dict[str, Any]:
    body = error.response.json()
    assert isinstance(body, dict)
    return body["error"]  # type: ignore[no-any-return]


def test_a_blocked_request_is_a_403_naming_the_rule_and_never_reaches_the_provider(make_gateway: Any, upstream: FakeUpstream, policy_dir: Path, store_dir: Path) -> None:
    write_policies(policy_dir, guard=BLOCK_AND_MASK)
    gateway = make_gateway()
    with sdk_client(gateway) as client, pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "how to enrich plutonium"}])
    error = error_body(caught.value)
    assert (error["type"], error["code"], error["policy"], error["rule"]) == ("policy_violation", "no-plutonium", "guard", "no-plutonium")
    assert error["message"] == "Nuclear materials are off topic."
    assert caught.value.response.headers["x-gateway-decision"] == "block"
    assert upstream.received == []
    record = audit_record_for(store_dir, error["request_id"])
    assert (record["outcome"], record["http_status"]) == ("blocked", 403)
    assert [(d["rule"], d["verdict"]) for d in record["decisions"]] == [("no-plutonium", "block")]
    assert record["policy_version"] == caught.value.response.headers["x-gateway-policy-version"]


def test_redacted_text_reaches_the_provider_and_originals_come_back(make_gateway: Any, upstream: FakeUpstream, policy_dir: Path, store_dir: Path) -> None:
    write_policies(policy_dir, guard=BLOCK_AND_MASK)
    gateway = make_gateway()
    with sdk_client(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=[{"role": "user", "content": "mail ann@example.com"}])
    completion = raw.parse()
    assert upstream.received[-1].body["messages"][0]["content"] == "mail [EMAIL_1]"
    assert completion.choices[0].message.content == "echo: mail ann@example.com"  # the provider echoed the placeholder
    assert raw.headers["x-gateway-decision"] == "redact"
    record = audit_record_for(store_dir, raw.headers["x-request-id"])
    assert [(d["rule"], d["verdict"], d["detail"]) for d in record["decisions"]] == [("mask-email", "redact", "EMAIL x1")]
    assert "ann@example.com" not in json.dumps(record)


def test_a_reply_that_breaks_a_rule_is_blocked(make_gateway: Any, upstream: FakeUpstream, policy_dir: Path) -> None:
    write_policies(policy_dir, guard=BLOCK_AND_MASK)
    gateway = make_gateway()
    upstream.enqueue(Reply(body={"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": "sure, plutonium is..."}, "finish_reason": "stop"}]}))
    with sdk_client(gateway) as client, pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "tell me about metals"}])
    assert error_body(caught.value)["code"] == "no-plutonium"


def test_a_stream_stopped_midway_ends_with_content_filter_and_an_error(make_gateway: Any, upstream: FakeUpstream, policy_dir: Path, store_dir: Path) -> None:
    write_policies(policy_dir, guard=BLOCK_AND_MASK)
    gateway = make_gateway()
    upstream.enqueue(Reply(chunks=("x" * 300, " and then pluto", "nium arrives", " later")))
    seen: list[Any] = []
    with sdk_client(gateway) as client:
        stream = client.chat.completions.create(model="gpt-test", stream=True, messages=[{"role": "user", "content": "go"}])
        with pytest.raises(openai.APIError) as caught:
            for chunk in stream:
                seen.append(chunk)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in seen if chunk.choices)
    assert set(text) == {"x"} and len(text) >= 300 - 256  # all but the hold-back window went out; no "pluto"
    assert seen[-1].choices[0].finish_reason == "content_filter"
    assert "Nuclear materials are off topic." in str(caught.value)
    (record,) = wait_until(lambda: [r for r in read_audit(store_dir) if r.get("outcome") == "blocked"], what="the blocked stream's record")
    assert record["http_status"] == 200  # the status line had gone out; the record says how it ended
    assert [(d["rule"], d["phase"]) for d in record["decisions"]] == [("no-plutonium", "response")]


def test_a_secret_split_across_stream_chunks_is_redacted(make_gateway: Any, upstream: FakeUpstream, policy_dir: Path) -> None:
    write_policies(policy_dir, replies="""
        rules:
          - {id: no-secrets-out, phase: response, check: {secrets: {}}, action: redact}
    """)
    gateway = make_gateway()
    upstream.enqueue(Reply(chunks=("key = ghp_16C7e42F29", "2c6925D7Ba29C12c1d3c4d5e6f7a8b9", " ok")))
    with sdk_client(gateway) as client:
        stream = client.chat.completions.create(model="gpt-test", stream=True, messages=[{"role": "user", "content": "go"}])
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "key = [GITHUB_TOKEN_1] ok"


def test_monitor_mode_lets_traffic_through_and_records_what_it_would_do(make_gateway: Any, upstream: FakeUpstream, policy_dir: Path, store_dir: Path) -> None:
    write_policies(policy_dir, shadow="mode: monitor\n" + BLOCK_AND_MASK)
    gateway = make_gateway()
    with sdk_client(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=[{"role": "user", "content": "plutonium for ann@example.com"}])
    assert raw.headers["x-gateway-decision"] == "allow"
    assert upstream.received[-1].body["messages"][0]["content"] == "plutonium for ann@example.com"
    record = audit_record_for(store_dir, raw.headers["x-request-id"])
    assert sorted((d["phase"], d["verdict"]) for d in record["decisions"]) == [
        ("request", "would_block"), ("request", "would_redact"), ("response", "would_block"),  # the reply echoed the word
    ]


def test_a_fallback_rule_reroutes_to_another_model(make_gateway: Any, upstream: FakeUpstream, policy_dir: Path) -> None:
    write_policies(policy_dir, route="""
        rules:
          - {id: big-to-mock, phase: request, check: {limits: {parameters: {max_tokens: {max: 100}}}}, action: fallback, fallback: {model: mock-gpt}}
    """)
    gateway = make_gateway()
    with sdk_client(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-test", max_tokens=500, messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-gateway-target"].startswith("mock/")
    assert raw.headers["x-gateway-decision"] == "fallback"
    assert upstream.received == []


def test_a_reply_failing_its_schema_falls_back_once(make_gateway: Any, upstream: FakeUpstream, policy_dir: Path) -> None:
    write_policies(policy_dir, schema="""
        rules:
          - id: json-only
            phase: response
            check: {json_schema: {schema: {type: object}}}
            action: fallback
            fallback: {model: gpt-test}
    """)
    gateway = make_gateway()
    with sdk_client(gateway) as client, pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert error_body(caught.value)["code"] == "json-only"  # the fallback's reply failed too: blocked, not looped
    assert len(upstream.received) == 2


def test_readyz_and_headers_carry_the_bundle_version(make_gateway: Any, policy_dir: Path) -> None:
    write_policies(policy_dir, guard=BLOCK_AND_MASK)
    gateway = make_gateway()
    ready = get(f"{gateway.url}/readyz").json()
    with sdk_client(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="mock-gpt", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-gateway-policy-version"] == ready["policy_version"]
    assert len(ready["policy_version"]) == 64


def test_a_slow_stream_is_not_held_back_longer_than_the_time_bound(make_gateway: Any, upstream: FakeUpstream, policy_dir: Path) -> None:
    write_policies(policy_dir, replies="""
        rules:
          - {id: no-secrets-out, phase: response, check: {secrets: {}}, action: redact}
    """)
    gateway = make_gateway(policies={"stream": {"max_hold_ms": 100}})
    upstream.enqueue(Reply(chunks=("first words ", "then more ", "and the end"), chunk_delay_s=0.5))
    arrivals: list[tuple[float, str]] = []
    with sdk_client(gateway) as client:
        stream = client.chat.completions.create(model="gpt-test", stream=True, messages=[{"role": "user", "content": "go"}])
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append((time.monotonic(), chunk.choices[0].delta.content))
    assert "".join(text for _, text in arrivals) == "first words then more and the end"
    assert arrivals[0][1].startswith("first") and arrivals[-1][0] - arrivals[0][0] > 0.6  # released long before the end


def test_audit_content_redacted_stores_the_text_as_forwarded(make_gateway: Any, upstream: FakeUpstream, policy_dir: Path, store_dir: Path) -> None:
    write_policies(policy_dir, guard=BLOCK_AND_MASK)
    gateway = make_gateway(audit={"content": "redacted"})
    with sdk_client(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=[{"role": "user", "content": "mail ann@example.com"}])
    record = audit_record_for(store_dir, raw.headers["x-request-id"])
    assert record["content"]["redacted"] is True
    assert record["content"]["request"]["messages"][0]["content"] == "mail [EMAIL_1]"
    assert raw.parse().choices[0].message.content == "echo: mail ann@example.com"  # the client got it back...
    assert "[EMAIL_1]" in record["content"]["response"]  # ...the audit trail did not
    assert "ann@example.com" not in json.dumps(record["content"])
