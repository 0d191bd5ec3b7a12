"""The OpenAI-compatible endpoints, driven by the official (sync) openai SDK exactly as an application would.

Every endpoint is exercised through both kinds of provider: `gpt-test` goes to the fake OpenAI upstream (a
real aiohttp server) as `fake-model`, `mock-gpt` / `mock-embedding` are served by the built-in mock.
"""

from __future__ import annotations

import re
from pathlib import Path

import openai
import orjson
import pytest

from gateway.policy.engine import EMPTY_BUNDLE_VERSION
from gateway.providers.mock import REPLY_PREFIX
from gateway.testing.threads import GatewayServer
from gateway.testing.upstream import FakeUpstream, Reply
from support import audit_record_for, raw_request, upstream_headers

USER = [{"role": "user", "content": "hello there"}]
GENERATED_ID = re.compile(r"[0-9a-f]{32}")

# public model -> (x-gateway-target, reply text for USER)
CHAT_MODELS = {
    "gpt-test": ("fake/fake-model", "echo: hello there"),
    "mock-gpt": ("mock/mock-gpt", REPLY_PREFIX + "hello there"),
}


def assert_proxied_headers(headers: object, target: str) -> None:
    assert headers["x-gateway-policy-version"] == EMPTY_BUNDLE_VERSION  # type: ignore[index]
    assert headers["x-gateway-decision"] == "allow"  # type: ignore[index]
    assert headers["x-gateway-target"] == target  # type: ignore[index]
    assert headers["x-request-id"]  # type: ignore[index]


# -- chat ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", CHAT_MODELS)
def test_chat_completion(client: openai.OpenAI, model: str) -> None:
    target, text = CHAT_MODELS[model]
    raw = client.chat.completions.with_raw_response.create(model=model, messages=USER)
    reply = raw.parse()
    assert reply.choices[0].message.content == text
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.total_tokens > 0
    assert_proxied_headers(raw.headers, target)


def test_chat_upstream_receives_the_reserialised_body_with_the_target_model(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    client.chat.completions.create(model="gpt-test", messages=USER, temperature=0.25, max_tokens=7, extra_body={"metadata": {"k": "v"}})
    assert len(upstream.received) == 1
    received = upstream.received[0]
    assert received.method == "POST"
    assert received.path == "/v1/chat/completions"
    assert received.body == {"model": "fake-model", "messages": USER, "temperature": 0.25, "max_tokens": 7, "metadata": {"k": "v"}}
    assert received.raw == orjson.dumps(received.body)  # the parsed object, serialised once by the gateway
    assert upstream_headers(received)["content-type"] == "application/json"


def test_upstream_receives_the_parsed_body_not_the_raw_bytes(gateway: GatewayServer, upstream: FakeUpstream) -> None:
    # The SDK always sends compact JSON; raw HTTP shows the gateway forwards what it parsed, never the bytes.
    # Duplicate keys: the checked value (the last one) is the one the provider sees.
    sent = b'{ "model" : "gpt-test",\n  "messages": [{"role": "user", "content": "\\u0041bc"}], "temperature": 1, "temperature": 0.5 }'
    response = raw_request(f"{gateway.base_url}/chat/completions", sent, headers={"content-type": "application/json"})
    assert response.status == 200, response.body
    assert upstream.received[0].raw == orjson.dumps({"model": "fake-model", "messages": [{"role": "user", "content": "Abc"}], "temperature": 0.5})


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_chat_stream(client: openai.OpenAI, model: str) -> None:
    target, text = CHAT_MODELS[model]
    raw = client.chat.completions.with_raw_response.create(model=model, messages=USER, stream=True)
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert_proxied_headers(raw.headers, target)
    chunks = list(raw.parse())
    assert len(chunks) >= 3  # streamed piece by piece, not as one blob
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    expected = "w0 w1 w2 w3 w4 " if model == "gpt-test" else text
    assert content == expected
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def test_chat_stream_sends_stream_flag_upstream(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    list(client.chat.completions.create(model="gpt-test", messages=USER, stream=True))
    assert upstream.received[0].body == {"model": "fake-model", "messages": USER, "stream": True}


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_chat_stream_include_usage_delivers_a_usage_chunk(client: openai.OpenAI, upstream: FakeUpstream, model: str) -> None:
    stream = client.chat.completions.create(model=model, messages=USER, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    if model == "gpt-test":
        assert upstream.received[0].body["stream_options"] == {"include_usage": True}
        assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (7, 5)


def test_chat_stream_without_include_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="mock-gpt", messages=USER, stream=True))
    assert all(c.usage is None and c.choices for c in chunks)


def test_stream_usage_is_audited(client: openai.OpenAI, store_dir: Path) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    list(raw.parse())
    record = audit_record_for(store_dir, raw.headers["x-request-id"])
    assert record["usage"] == {"prompt_tokens": 7, "completion_tokens": 5}
    assert record["stream"] is True
    assert record["stream_chunks"] == 8  # role + 5 words + finish + usage


# -- completions --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("model", "target", "text"), [("gpt-test", "fake/fake-model", "echo: say this"), ("mock-gpt", "mock/mock-gpt", REPLY_PREFIX + "say this")])
def test_completion(client: openai.OpenAI, upstream: FakeUpstream, model: str, target: str, text: str) -> None:
    raw = client.completions.with_raw_response.create(model=model, prompt="say this", max_tokens=5)
    reply = raw.parse()
    assert reply.object == "text_completion"
    assert reply.choices[0].text == text
    assert_proxied_headers(raw.headers, target)
    if model == "gpt-test":
        assert upstream.received[0].path == "/v1/completions"
        assert upstream.received[0].body == {"model": "fake-model", "prompt": "say this", "max_tokens": 5}


@pytest.mark.parametrize(("model", "text"), [("gpt-test", "w0 w1 w2 w3 w4 "), ("mock-gpt", REPLY_PREFIX + "say this")])
def test_completion_stream(client: openai.OpenAI, model: str, text: str) -> None:
    chunks = list(client.completions.create(model=model, prompt="say this", stream=True, stream_options={"include_usage": True}))
    assert len(chunks) >= 3
    assert "".join(c.choices[0].text for c in chunks if c.choices) == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


# -- embeddings ---------------------------------------------------------------------------------------------
def test_embeddings_through_fake_upstream(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    raw = client.embeddings.with_raw_response.create(model="gpt-test", input=["one", "two"], encoding_format="float")
    reply = raw.parse()
    assert [item.embedding for item in reply.data] == [[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]]
    assert [item.index for item in reply.data] == [0, 1]
    assert upstream.received[0].path == "/v1/embeddings"
    assert upstream.received[0].body == {"model": "fake-model", "input": ["one", "two"], "encoding_format": "float"}
    assert_proxied_headers(raw.headers, "fake/fake-model")


def test_embeddings_through_mock(client: openai.OpenAI) -> None:
    first = client.embeddings.create(model="mock-embedding", input="some text")
    again = client.embeddings.create(model="mock-embedding", input="some text")
    other = client.embeddings.create(model="mock-embedding", input="other text")
    assert len(first.data) == 1
    vector = first.data[0].embedding
    assert len(vector) == 16 and all(isinstance(v, float) for v in vector)
    assert again.data[0].embedding == vector  # deterministic
    assert other.data[0].embedding != vector
    assert first.usage.prompt_tokens > 0


def test_embeddings_ignore_stream_flag(client: openai.OpenAI) -> None:
    # Embeddings never stream: a stray `stream: true` must still get a JSON answer.
    reply = client.embeddings.create(model="mock-embedding", input="x", extra_body={"stream": True})
    assert len(reply.data) == 1


# -- models -------------------------------------------------------------------------------------------------
def test_models_list(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert sorted(m.id for m in models.data) == ["gpt-test", "mock-embedding", "mock-gpt"]
    assert all(m.object == "model" and m.owned_by == "gateway" for m in models.data)


@pytest.mark.parametrize("model", ["gpt-test", "mock-gpt", "mock-embedding"])
def test_models_retrieve(client: openai.OpenAI, model: str) -> None:
    found = client.models.retrieve(model)
    assert found.id == model
    assert found.object == "model"


def test_models_retrieve_unknown_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"


def test_models_carry_gateway_headers(client: openai.OpenAI) -> None:
    raw = client.models.with_raw_response.list(extra_headers={"x-request-id": "models-list-1"})
    assert raw.headers["x-request-id"] == "models-list-1"
    assert raw.headers["x-gateway-policy-version"] == EMPTY_BUNDLE_VERSION


def test_models_do_not_call_the_upstream(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    client.models.list()
    client.models.retrieve("gpt-test")
    assert upstream.received == []


# -- x-request-id -------------------------------------------------------------------------------------------
def test_client_request_id_is_kept_echoed_and_forwarded(client: openai.OpenAI, upstream: FakeUpstream, store_dir: Path) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=USER, extra_headers={"x-request-id": "app-req.42:a_b-c"})
    assert raw.headers["x-request-id"] == "app-req.42:a_b-c"
    assert upstream_headers(upstream.received[0])["x-request-id"] == "app-req.42:a_b-c"
    assert audit_record_for(store_dir, "app-req.42:a_b-c")["http_status"] == 200


def test_request_id_is_generated_when_absent(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    first = client.chat.completions.with_raw_response.create(model="gpt-test", messages=USER)
    second = client.chat.completions.with_raw_response.create(model="gpt-test", messages=USER)
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(GENERATED_ID.fullmatch(i) for i in ids)
    assert ids[0] != ids[1]
    assert [upstream_headers(r)["x-request-id"] for r in upstream.received] == ids  # the upstream sees the same id


@pytest.mark.parametrize("insane", ["has spaces in it", "x" * 129, "semi;colon", "<script>"])
def test_insane_request_id_is_replaced(client: openai.OpenAI, upstream: FakeUpstream, insane: str) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=USER, extra_headers={"x-request-id": insane})
    generated = raw.headers["x-request-id"]
    assert GENERATED_ID.fullmatch(generated)
    assert upstream_headers(upstream.received[0])["x-request-id"] == generated


def test_request_id_on_streams_and_errors(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    raw = client.chat.completions.with_raw_response.create(model="mock-gpt", messages=USER, stream=True, extra_headers={"x-request-id": "stream-id-1"})
    list(raw.parse())
    assert raw.headers["x-request-id"] == "stream-id-1"
    upstream.enqueue(Reply(status=500))
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-test", messages=USER, extra_headers={"x-request-id": "error-id-1"})
    assert caught.value.response.headers["x-request-id"] == "error-id-1"
    assert caught.value.body["request_id"] == "error-id-1"  # type: ignore[index]
