"""Upstream failures as the application sees them through the openai SDK: DESIGN.md's 429/502/504 rows.

Failures before a stream starts are ordinary OpenAI-shaped error responses; once a stream has started, a
failure ends it with one SSE `data: {"error": ...}` event and `data: [DONE]`, and the SDK raises (never hangs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from gateway.testing.upstream import FakeUpstream, Reply
from support import UPSTREAM_KEY, audit_record_for, fake_provider, free_port, sdk_client

USER = [{"role": "user", "content": "hi"}]
ERROR_KEYS = {"message", "type", "code", "param", "request_id", "policy", "rule", "review_id"}


def fail(client: openai.OpenAI, exception: type[openai.APIStatusError], *, stream: bool = False, request_id: str = "up-err-1") -> openai.APIStatusError:
    with pytest.raises(exception) as caught:
        client.chat.completions.create(model="gpt-test", messages=USER, stream=stream, extra_headers={"x-request-id": request_id})
    error = caught.value
    assert type(error) is exception
    assert set(error.body) == ERROR_KEYS  # type: ignore[arg-type]
    assert error.body["request_id"] == request_id  # type: ignore[index]
    assert error.response.headers["x-request-id"] == request_id
    assert error.response.headers["x-gateway-target"] == "fake/fake-model"
    assert UPSTREAM_KEY not in error.response.text
    return error


def assert_upstream_error(error: openai.APIStatusError, status: int, code: str) -> None:
    assert error.status_code == status
    assert error.type == "upstream_error"
    assert error.code == code


# -- non-streamed ---------------------------------------------------------------------------------------------
def test_connection_refused_is_502(make_gateway: Any, store_dir: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    gateway = make_gateway(providers={"fake": fake_provider(closed)})
    with sdk_client(gateway) as client:
        error = fail(client, openai.InternalServerError)
    assert_upstream_error(error, 502, "upstream_connect_error")
    assert "cannot connect" in error.message
    record = audit_record_for(store_dir, "up-err-1")
    assert record["route"][0]["target"] == "fake/fake-model"
    assert record["route"][0]["error"] == "upstream_connect_error"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_upstream_5xx_is_502(client: openai.OpenAI, upstream: FakeUpstream, status: int) -> None:
    upstream.enqueue(Reply(status=status))
    error = fail(client, openai.InternalServerError)
    assert_upstream_error(error, 502, f"upstream_status_{status}")
    assert f"HTTP {status}" in error.message


@pytest.mark.parametrize("status", [401, 403])
def test_upstream_refusing_our_key_is_502_not_an_auth_error(client: openai.OpenAI, upstream: FakeUpstream, status: int) -> None:
    upstream.enqueue(Reply(status=status, body={"error": {"message": f"Incorrect API key provided: {UPSTREAM_KEY[:8]}...", "type": "invalid_request_error"}}))
    error = fail(client, openai.InternalServerError)
    assert_upstream_error(error, 502, "upstream_auth_failed")
    assert "credentials" in error.message
    assert UPSTREAM_KEY[:8] not in error.message  # the provider's wording (which may quote the key) is not relayed


def test_upstream_400_is_passed_through_with_its_message(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(status=400, body={"error": {"message": "temperature must be at most 2", "type": "invalid_request_error", "param": "temperature"}}))
    error = fail(client, openai.BadRequestError)
    assert error.status_code == 400
    assert error.type == "invalid_request_error"
    assert "temperature must be at most 2" in error.message


@pytest.mark.parametrize(("status", "exception"), [(404, openai.NotFoundError), (422, openai.UnprocessableEntityError), (409, openai.ConflictError)])
def test_other_upstream_4xx_keep_their_status(client: openai.OpenAI, upstream: FakeUpstream, status: int, exception: type[openai.APIStatusError]) -> None:
    upstream.enqueue(Reply(status=status, body={"error": {"message": f"upstream says {status}"}}))
    error = fail(client, exception)
    assert error.status_code == status
    assert f"upstream says {status}" in error.message


def test_upstream_429_is_a_rate_limit_error_with_retry_after(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(status=429, headers={"retry-after": "7"}, body={"error": {"message": "slow down", "type": "rate_limit_error"}}))
    error = fail(client, openai.RateLimitError)
    assert error.status_code == 429
    assert error.type == "rate_limit_error"
    assert error.response.headers["retry-after"] == "7"
    assert "slow down" in error.message


def test_upstream_error_with_non_json_body(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(status=503, body=b"<html>Service Unavailable</html>"))
    error = fail(client, openai.InternalServerError)
    assert_upstream_error(error, 502, "upstream_status_503")


@pytest.mark.parametrize("body", [b"this is not json", b"<html></html>", b'{"truncated": ', b"\xff\xfe"])
def test_garbage_200_is_502(client: openai.OpenAI, upstream: FakeUpstream, body: bytes) -> None:
    upstream.enqueue(Reply(body=body))
    error = fail(client, openai.InternalServerError)
    assert_upstream_error(error, 502, "upstream_bad_response")
    assert "not JSON" in error.message


@pytest.mark.parametrize("body", [b"[1, 2, 3]", b'"text"', b"null"])
def test_json_that_is_not_an_object_is_502(client: openai.OpenAI, upstream: FakeUpstream, body: bytes) -> None:
    upstream.enqueue(Reply(body=body))
    error = fail(client, openai.InternalServerError)
    assert_upstream_error(error, 502, "upstream_bad_response")


def test_first_byte_timeout_is_504(make_gateway: Any, upstream: FakeUpstream) -> None:
    gateway = make_gateway(providers={"fake": fake_provider(upstream.base_url, first_byte_s=0.2)})
    upstream.enqueue(Reply(delay_s=3))
    with sdk_client(gateway) as client:
        error = fail(client, openai.InternalServerError)
    assert_upstream_error(error, 504, "upstream_first_byte_timeout")


def test_route_timeout_bounds_the_attempt(make_gateway: Any, upstream: FakeUpstream) -> None:
    gateway = make_gateway(models={"gpt-test": {"targets": [{"provider": "fake", "model": "fake-model"}], "timeout_s": 0.2}})
    upstream.enqueue(Reply(delay_s=3))
    with sdk_client(gateway) as client:
        error = fail(client, openai.InternalServerError)
    assert error.status_code == 504
    assert error.type == "upstream_error"


def test_connection_reset_is_502(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(reset=True))
    error = fail(client, openai.InternalServerError)
    assert_upstream_error(error, 502, "upstream_connect_error")


def test_gateway_recovers_after_upstream_failures(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(reset=True), Reply(status=500), Reply(body=b"junk"))
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-test", messages=USER)
    assert client.chat.completions.create(model="gpt-test", messages=USER).choices[0].message.content == "echo: hi"


# -- failures before a stream starts: plain error responses ------------------------------------------------------
def test_stream_request_answered_with_json_is_502_before_the_stream(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(body={"id": "x", "object": "chat.completion", "choices": []}))
    error = fail(client, openai.InternalServerError, stream=True)
    assert_upstream_error(error, 502, "upstream_bad_response")
    assert error.response.headers["content-type"].startswith("application/json")
    assert "application/json" in error.message


def test_stream_request_with_upstream_500_is_502(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(status=500))
    assert_upstream_error(fail(client, openai.InternalServerError, stream=True), 502, "upstream_status_500")


def test_stream_request_with_upstream_429(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(status=429, headers={"retry-after": "3"}))
    error = fail(client, openai.RateLimitError, stream=True)
    assert error.response.headers["retry-after"] == "3"


def test_stream_first_byte_timeout_is_504(make_gateway: Any, upstream: FakeUpstream) -> None:
    gateway = make_gateway(providers={"fake": fake_provider(upstream.base_url, first_byte_s=0.2)})
    upstream.enqueue(Reply(delay_s=3))
    with sdk_client(gateway) as client:
        assert_upstream_error(fail(client, openai.InternalServerError, stream=True), 504, "upstream_first_byte_timeout")


def test_stream_connection_refused_is_502(make_gateway: Any) -> None:
    gateway = make_gateway(providers={"fake": fake_provider(f"http://127.0.0.1:{free_port()}/v1")})
    with sdk_client(gateway) as client:
        assert_upstream_error(fail(client, openai.InternalServerError, stream=True), 502, "upstream_connect_error")


# -- failures after a stream started: an error event, then [DONE] ------------------------------------------------
def sse_events(client: openai.OpenAI, request_id: str) -> list[bytes]:
    """The raw SSE `data:` payloads of one streamed chat request (the SDK's streaming-response view)."""
    with client.chat.completions.with_streaming_response.create(
        model="gpt-test", messages=USER, stream=True, extra_headers={"x-request-id": request_id}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines), lines
    return [line[len("data: ") :].encode() for line in lines]


def assert_ends_with_error(events: list[bytes], code: str, request_id: str) -> dict[str, Any]:
    assert events[-1] == b"[DONE]"
    assert events.count(b"[DONE]") == 1
    final = orjson.loads(events[-2])
    assert set(final) == {"error"}
    error = final["error"]
    assert set(error) == ERROR_KEYS
    assert (error["type"], error["code"], error["request_id"]) == ("upstream_error", code, request_id)
    assert UPSTREAM_KEY.encode() not in b"".join(events)
    return error


STREAM_FAILURES = {
    "broken": (Reply(break_after=3), {}, "upstream_stream_broken", 3),
    "idle": (Reply(chunk_delay_s=2.0), {"idle_s": 0.3}, "upstream_idle_timeout", 1),
    "garbage": (Reply(stream_garbage=True), {}, "upstream_bad_response", 2),
    "no_done": (Reply(omit_done=True), {}, "upstream_stream_truncated", 7),
    "error_event": (Reply(stream_error={"message": "overloaded", "type": "server_error"}), {}, "upstream_stream_error", 2),
    "oversized_event": (Reply(stream_raw=b"data: " + b"x" * (9 * 1024 * 1024)), {}, "upstream_bad_response", 2),
}


@pytest.mark.parametrize("case", STREAM_FAILURES)
def test_stream_failure_ends_with_error_event_and_done(make_gateway: Any, upstream: FakeUpstream, store_dir: Path, case: str) -> None:
    reply, timeouts, code, relayed = STREAM_FAILURES[case]
    gateway = make_gateway(providers={"fake": fake_provider(upstream.base_url, **timeouts)})
    upstream.enqueue(reply)
    with sdk_client(gateway) as client:
        events = sse_events(client, f"stream-{case}")
    error = assert_ends_with_error(events, code, f"stream-{case}")
    chunks = [orjson.loads(e) for e in events[:-2]]
    assert len(chunks) == relayed  # what arrived before the failure was relayed, and nothing else
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    record = audit_record_for(store_dir, f"stream-{case}")
    assert (record["http_status"], record["outcome"]) == (200, "stream_error")
    assert record["error"] == {"type": "upstream_error", "code": error["code"]}


@pytest.mark.parametrize("case", STREAM_FAILURES)
def test_sdk_raises_on_a_failed_stream(make_gateway: Any, upstream: FakeUpstream, case: str) -> None:
    reply, timeouts, code, relayed = STREAM_FAILURES[case]
    gateway = make_gateway(providers={"fake": fake_provider(upstream.base_url, **timeouts)})
    upstream.enqueue(reply)
    chunks = []
    with sdk_client(gateway, timeout=15) as client:
        stream = client.chat.completions.create(model="gpt-test", messages=USER, stream=True)
        with pytest.raises(openai.APIError) as caught:
            for chunk in stream:
                chunks.append(chunk)
    assert len(chunks) == relayed
    assert caught.value.code == code
    assert caught.value.type == "upstream_error"


def test_upstream_is_used_again_after_a_broken_stream(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(break_after=2))
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="gpt-test", messages=USER, stream=True))
    chunks = list(client.chat.completions.create(model="gpt-test", messages=USER, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "w0 w1 w2 w3 w4 "


def test_slow_but_steady_stream_is_not_an_idle_timeout(make_gateway: Any, upstream: FakeUpstream) -> None:
    # idle_s bounds the gap between chunks, not the whole stream.
    gateway = make_gateway(providers={"fake": fake_provider(upstream.base_url, idle_s=0.5)})
    upstream.enqueue(Reply(chunk_delay_s=0.1, words=8))
    with sdk_client(gateway) as client:
        chunks = list(client.chat.completions.create(model="gpt-test", messages=USER, stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len(chunks) == 10


def test_route_deadline_ends_a_steady_stream_as_a_deadline_not_a_stall(make_gateway: Any, upstream: FakeUpstream) -> None:
    # The route's timeout_s bounds the whole call, streams included; the error says which limit hit.
    gateway = make_gateway(models={"gpt-test": {"targets": [{"provider": "fake", "model": "fake-model"}], "timeout_s": 0.5}})
    upstream.enqueue(Reply(chunk_delay_s=0.15, words=20))
    with sdk_client(gateway) as client:
        stream = client.chat.completions.create(model="gpt-test", messages=USER, stream=True)
        with pytest.raises(openai.APIError) as caught:
            for _ in stream:
                pass
    assert caught.value.code == "upstream_deadline_exceeded"
