"""Bad input from clients: every 4xx row of DESIGN.md's error table, in the OpenAI error shape.

The SDK sends what an application can send (unknown model, missing fields through its low-level `post`);
raw HTTP (urllib) only sends what the SDK cannot: malformed JSON, other content types, invalid UTF-8,
oversized and chunked bodies.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.policy.engine import EMPTY_BUNDLE_VERSION
from gateway.testing.threads import GatewayServer
from gateway.testing.upstream import FakeUpstream
from support import RawResponse, audit_record_for, raw_request

ERROR_KEYS = {"message", "type", "code", "param", "request_id", "policy", "rule", "review_id"}
CHAT_BODY = b'{"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}'


def assert_openai_error(response: RawResponse, status: int, code: str, *, param: str | None = None) -> dict[str, Any]:
    assert response.status == status, response.body
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == ERROR_KEYS
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code
    assert error["param"] == param
    assert isinstance(error["message"], str) and error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    assert (error["policy"], error["rule"], error["review_id"]) == (None, None, None)
    assert response.headers["x-gateway-policy-version"] == EMPTY_BUNDLE_VERSION
    return error


def post(gateway: GatewayServer, data: bytes | Iterator[bytes], *, path: str = "chat/completions", content_type: str | None = "application/json", **headers: str) -> RawResponse:
    all_headers = dict(headers)
    if content_type is not None:
        all_headers["content-type"] = content_type
    return raw_request(f"{gateway.base_url}/{path}", data, headers=all_headers)  # type: ignore[arg-type]


# -- what only raw HTTP can send ---------------------------------------------------------------------------
DEEP = b'{"model": "gpt-test", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"


@pytest.mark.parametrize("data", [b'{"model": "gpt-test", "messages": [', b"", b"{'model': 'single quotes'}", b'{"model": "gpt-test"} trailing', b"\xef\xbb\xbf{}", DEEP])
def test_malformed_json_is_400(gateway: GatewayServer, upstream: FakeUpstream, data: bytes) -> None:
    error = assert_openai_error(post(gateway, data), 400, "invalid_json")
    assert "not valid JSON" in error["message"]
    assert upstream.received == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None])
def test_wrong_content_type_is_400(gateway: GatewayServer, upstream: FakeUpstream, content_type: str | None) -> None:
    error = assert_openai_error(post(gateway, CHAT_BODY, content_type=content_type), 400, "unsupported_content_type")
    assert "application/json" in error["message"]
    assert upstream.received == []


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON"])
def test_json_content_type_variants_are_accepted(gateway: GatewayServer, content_type: str) -> None:
    assert post(gateway, CHAT_BODY, content_type=content_type).status == 200


@pytest.mark.parametrize("data", [b'{"model": "gpt-test", "messages": [{"role": "user", "content": "\xff\xfe"}]}', b'{"model": "gpt-\xc3("}', b"\xed\xa0\x80"])
def test_invalid_utf8_is_400(gateway: GatewayServer, upstream: FakeUpstream, data: bytes) -> None:
    error = assert_openai_error(post(gateway, data), 400, "invalid_utf8")
    assert "UTF-8" in error["message"]
    assert upstream.received == []


@pytest.mark.parametrize("data", [b"[1, 2]", b'"a string"', b"42", b"null", b"true"])
def test_non_object_json_is_400(gateway: GatewayServer, data: bytes) -> None:
    error = assert_openai_error(post(gateway, data), 400, "invalid_json")
    assert "JSON object" in error["message"]


# -- body size (413) ---------------------------------------------------------------------------------------
LIMIT = 2048


@pytest.fixture
def small_gateway(make_gateway: Any) -> GatewayServer:
    return make_gateway(limits={"max_body_bytes": LIMIT, "drain_timeout_s": 5})


def body_of_size(size: int) -> bytes:
    head, tail = b'{"model": "gpt-test", "messages": [{"role": "user", "content": "', b'"}]}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


def test_body_at_the_limit_is_accepted(small_gateway: GatewayServer, upstream: FakeUpstream) -> None:
    assert post(small_gateway, body_of_size(LIMIT)).status == 200
    assert len(upstream.received) == 1


def test_body_over_the_limit_with_content_length_is_413(small_gateway: GatewayServer, upstream: FakeUpstream) -> None:
    error = assert_openai_error(post(small_gateway, body_of_size(LIMIT + 1)), 413, "body_too_large")
    assert str(LIMIT) in error["message"]
    assert upstream.received == []


def test_chunked_body_over_the_limit_is_413(small_gateway: GatewayServer, upstream: FakeUpstream) -> None:
    body = body_of_size(LIMIT * 3)
    chunks = iter([body[i : i + 500] for i in range(0, len(body), 500)])  # no Content-Length: chunked encoding
    assert_openai_error(post(small_gateway, chunks), 413, "body_too_large")
    assert upstream.received == []


def test_chunked_body_under_the_limit_is_accepted(small_gateway: GatewayServer) -> None:
    assert post(small_gateway, iter([CHAT_BODY[:20], CHAT_BODY[20:]])).status == 200


def test_compressed_body_is_limited_by_its_decompressed_size(small_gateway: GatewayServer, upstream: FakeUpstream) -> None:
    bomb = gzip.compress(body_of_size(LIMIT * 20))
    assert len(bomb) < LIMIT
    assert_openai_error(post(small_gateway, bomb, **{"content-encoding": "gzip"}), 413, "body_too_large")
    assert upstream.received == []


def test_sdk_sees_413_as_a_status_error(small_gateway: GatewayServer) -> None:
    with openai.OpenAI(base_url=small_gateway.base_url, api_key="k", max_retries=0) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x" * LIMIT}])
    assert caught.value.status_code == 413
    assert caught.value.code == "body_too_large"
    assert caught.value.type == "invalid_request_error"


# -- what the SDK can send: schema errors and unknown models ---------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body", "param", "code"),
    [
        ("/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, "model", "missing_model"),
        ("/chat/completions", {"model": "", "messages": [{"role": "user", "content": "hi"}]}, "model", "missing_model"),
        ("/chat/completions", {"model": 42, "messages": [{"role": "user", "content": "hi"}]}, "model", "missing_model"),
        ("/chat/completions", {"model": "gpt-test"}, "messages", "missing_field"),
        ("/chat/completions", {"model": "gpt-test", "messages": "hi"}, "messages", "invalid_type"),
        ("/chat/completions", {"model": "gpt-test", "messages": []}, "messages", "invalid_type"),
        ("/chat/completions", {"model": "gpt-test", "messages": ["hi"]}, "messages", "invalid_type"),
        ("/chat/completions", {"model": "gpt-test", "messages": [{"content": "no role"}]}, "messages", "invalid_type"),
        ("/chat/completions", {"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream", "invalid_type"),
        ("/chat/completions", {"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "stream": True, "stream_options": "usage"}, "stream_options", "invalid_type"),
        ("/completions", {"model": "gpt-test"}, "prompt", "missing_field"),
        ("/completions", {"model": "gpt-test", "prompt": 7}, "prompt", "invalid_type"),
        ("/embeddings", {"model": "gpt-test"}, "input", "missing_field"),
        ("/embeddings", {"model": "gpt-test", "input": {"a": 1}}, "input", "invalid_type"),
    ],
)
def test_schema_errors_are_bad_requests(client: openai.OpenAI, upstream: FakeUpstream, path: str, body: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.post(path, body=body, cast_to=object)
    error = caught.value
    assert error.status_code == 400
    assert (error.type, error.code, error.param) == ("invalid_request_error", code, param)
    assert set(error.body) == ERROR_KEYS  # type: ignore[arg-type]
    assert upstream.received == []


def test_non_object_json_through_the_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/chat/completions", body=[{"model": "gpt-test"}], cast_to=object)
    assert caught.value.code == "invalid_json"


def test_unknown_model_is_400(client: openai.OpenAI, upstream: FakeUpstream, store_dir: Path) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-nonexistent", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-request-id": "unknown-model-1"})
    error = caught.value
    assert (error.status_code, error.type, error.code, error.param) == (400, "invalid_request_error", "model_not_found", "model")
    assert "gpt-nonexistent" in error.message
    assert error.body["request_id"] == "unknown-model-1"  # type: ignore[index]
    assert error.response.headers["x-gateway-decision"] == "allow"
    assert "x-gateway-target" not in error.response.headers  # no target was chosen
    assert upstream.received == []
    record = audit_record_for(store_dir, "unknown-model-1")
    assert (record["http_status"], record["outcome"], record["error"]["code"]) == (400, "error", "model_not_found")


@pytest.mark.parametrize("endpoint", ["completions", "embeddings"])
def test_unknown_model_on_other_endpoints(client: openai.OpenAI, endpoint: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        if endpoint == "completions":
            client.completions.create(model="nope", prompt="x")
        else:
            client.embeddings.create(model="nope", input="x")
    assert caught.value.code == "model_not_found"


def test_unknown_model_on_a_stream_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}], stream=True)
    assert caught.value.code == "model_not_found"


# -- unknown paths -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/nope", "/assistants", "/chat/completions/extra"])
def test_unknown_path_is_404_through_the_sdk(client: openai.OpenAI, path: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.post(path, body={"model": "gpt-test"}, cast_to=object, options={"headers": {"x-request-id": "nf-1"}})
    error = caught.value
    assert (error.status_code, error.type, error.code) == (404, "invalid_request_error", "not_found")
    assert set(error.body) == ERROR_KEYS  # type: ignore[arg-type]
    assert error.body["request_id"] == "nf-1"  # type: ignore[index]
    assert path in error.message


@pytest.mark.parametrize(("method", "path"), [("GET", "/"), ("GET", "/v1/chat/completions"), ("DELETE", "/v1/models")])
def test_unknown_route_is_openai_shaped(gateway: GatewayServer, method: str, path: str) -> None:
    response = raw_request(f"{gateway.url}{path}", method=method)
    assert response.status == 404
    body = response.json()
    assert set(body["error"]) == ERROR_KEYS
    assert body["error"]["code"] == "not_found"
    assert f"{method} {path}" in body["error"]["message"]
    assert body["error"]["request_id"] == response.headers["x-request-id"]
