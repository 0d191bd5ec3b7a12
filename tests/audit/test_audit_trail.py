"""The local audit trail: exactly one record per exchange, whatever its outcome, and no raw content by default."""

from __future__ import annotations

import hmac
import stat
import time
from hashlib import sha256
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from gateway.audit.keys import KEY_FILE
from gateway.policy.engine import EMPTY_BUNDLE_VERSION
from gateway.testing.threads import GatewayServer
from gateway.testing.upstream import FakeUpstream, Reply
from support import audit_path, audit_record_for, raw_request, read_audit, sdk_client, wait_until

PROMPT = "zebra-unique-prompt-8841 with a secret plan"
USER = [{"role": "user", "content": PROMPT}]
HEX64 = 64


def run_mixed_traffic(client: openai.OpenAI, gateway: GatewayServer, upstream: FakeUpstream) -> dict[str, tuple[int, str]]:
    """One exchange of each kind; returns request_id -> (http_status, outcome) expected in the audit."""
    client.chat.completions.create(model="gpt-test", messages=USER, extra_headers={"x-request-id": "a-ok"})
    client.chat.completions.create(model="mock-gpt", messages=USER, extra_headers={"x-request-id": "a-mock"})
    list(client.chat.completions.create(model="gpt-test", messages=USER, stream=True, extra_headers={"x-request-id": "a-stream"}))
    client.embeddings.create(model="mock-embedding", input=PROMPT, extra_headers={"x-request-id": "a-embed"})
    raw_request(f"{gateway.base_url}/chat/completions", b"{broken", headers={"content-type": "application/json", "x-request-id": "a-json"})
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="nope", messages=USER, extra_headers={"x-request-id": "a-model"})
    upstream.enqueue(Reply(status=500))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-test", messages=USER, extra_headers={"x-request-id": "a-502"})
    upstream.enqueue(Reply(break_after=3))
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="gpt-test", messages=USER, stream=True, extra_headers={"x-request-id": "a-broken"}))
    return {
        "a-ok": (200, "ok"),
        "a-mock": (200, "ok"),
        "a-stream": (200, "ok"),
        "a-embed": (200, "ok"),
        "a-json": (400, "error"),
        "a-model": (400, "error"),
        "a-502": (502, "error"),
        "a-broken": (200, "stream_error"),
    }


def test_one_record_per_exchange(client: openai.OpenAI, gateway: GatewayServer, upstream: FakeUpstream, store_dir: Path) -> None:
    expected = run_mixed_traffic(client, gateway, upstream)
    wait_until(lambda: len(read_audit(store_dir)) >= len(expected), what="all audit records")
    time.sleep(0.2)  # a duplicate written late would show up now
    records = read_audit(store_dir)
    assert sorted(r["request_id"] for r in records) == sorted(expected)
    for record in records:
        status, outcome = expected[record["request_id"]]
        assert (record["http_status"], record["outcome"]) == (status, outcome), record
        assert record["kind"] == "exchange"
        assert record["v"] == 1
        assert record["policy_version"] == EMPTY_BUNDLE_VERSION
        assert record["instance"]
        assert len(record["id"]) == 32
    assert len({r["id"] for r in records}) == len(records)


def test_records_hold_no_raw_content_by_default(client: openai.OpenAI, gateway: GatewayServer, upstream: FakeUpstream, store_dir: Path) -> None:
    expected = run_mixed_traffic(client, gateway, upstream)
    wait_until(lambda: len(read_audit(store_dir)) >= len(expected), what="all audit records")
    text = audit_path(store_dir).read_text()
    assert "zebra-unique-prompt-8841" not in text
    assert "secret plan" not in text
    assert "w0 w1" not in text  # nor the streamed reply
    ok = next(r for r in read_audit(store_dir) if r["request_id"] == "a-ok")
    assert set(ok["content"]) == {"request_hmac", "response_hmac"}
    assert len(ok["content"]["request_hmac"]) == HEX64
    assert len(ok["content"]["response_hmac"]) == HEX64


def test_record_fields_of_a_successful_exchange(client: openai.OpenAI, store_dir: Path) -> None:
    client.chat.completions.create(model="gpt-test", messages=USER, extra_headers={"x-request-id": "fields-1"})
    record = audit_record_for(store_dir, "fields-1")
    assert record["endpoint"] == "chat/completions"
    assert record["model"] == "gpt-test"
    assert record["stream"] is False
    assert record["principal"] == {"app": "anonymous", "tenant": None, "sub": None}
    assert [(a["target"], a["status"], a["error"]) for a in record["route"]] == [("fake/fake-model", 200, None)]
    assert record["usage"] == {"prompt_tokens": 7, "completion_tokens": 5}
    assert record["error"] is None
    assert record["degraded"] is False
    assert record["decisions"] == []
    assert set(record["latency_ms"]) == {"total", "upstream", "policy"}
    assert record["latency_ms"]["total"] >= record["latency_ms"]["upstream"] >= 0


def test_hmacs_match_content_with_the_configured_key(make_gateway: Any, store_dir: Path) -> None:
    gateway = make_gateway(audit={"hmac_key": "test-audit-key"})
    with sdk_client(gateway) as client:
        for request_id in ("h-1", "h-2"):
            client.chat.completions.create(model="mock-gpt", messages=USER, extra_headers={"x-request-id": request_id})
        client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "other"}], extra_headers={"x-request-id": "h-3"})
    first, second, other = (audit_record_for(store_dir, r)["content"] for r in ("h-1", "h-2", "h-3"))
    expected = hmac.new(b"test-audit-key", orjson.dumps({"model": "mock-gpt", "messages": USER}, option=orjson.OPT_SORT_KEYS), sha256).hexdigest()
    assert first["request_hmac"] == second["request_hmac"] == expected  # matchable later without storing the text
    assert other["request_hmac"] != expected
    assert not (store_dir / KEY_FILE).exists()  # a configured key is not written to disk


def test_generated_hmac_key_is_kept_private(client: openai.OpenAI, store_dir: Path) -> None:
    client.chat.completions.create(model="mock-gpt", messages=USER, extra_headers={"x-request-id": "k-1"})
    audit_record_for(store_dir, "k-1")
    key_file = store_dir / KEY_FILE
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_text().strip()) == HEX64


def test_content_none_stores_no_digests(make_gateway: Any, store_dir: Path) -> None:
    gateway = make_gateway(audit={"content": "none"})
    with sdk_client(gateway) as client:
        client.chat.completions.create(model="mock-gpt", messages=USER, extra_headers={"x-request-id": "none-1"})
    assert audit_record_for(store_dir, "none-1")["content"] is None


def test_content_full_stores_text_only_when_asked(make_gateway: Any, store_dir: Path) -> None:
    gateway = make_gateway(audit={"content": "full"})
    with sdk_client(gateway) as client:
        client.chat.completions.create(model="mock-gpt", messages=USER, extra_headers={"x-request-id": "full-1"})
    content = audit_record_for(store_dir, "full-1")["content"]
    assert content["request"]["messages"] == USER
    assert PROMPT in content["response"]


def test_records_survive_a_gateway_stop(make_gateway: Any, server_loop: Any, store_dir: Path) -> None:
    gateway = make_gateway()
    with sdk_client(gateway) as client:
        for index in range(20):
            client.chat.completions.create(model="mock-gpt", messages=USER, extra_headers={"x-request-id": f"stop-{index}"})
    server_loop.run(gateway.stop())  # the writer flushes what it holds before it closes
    assert sorted(r["request_id"] for r in read_audit(store_dir)) == sorted(f"stop-{i}" for i in range(20))
