"""The built-in `mock` provider: deterministic replies, word-per-chunk streams, hash-derived embeddings."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config.model import ProviderConfig
from gateway.exchange import Endpoint
from gateway.providers.base import UpstreamCall
from gateway.providers.mock import DEFAULT_EMBEDDING_DIMENSIONS, REPLY_PREFIX, MockProvider, estimate_tokens


def call(endpoint: Endpoint, **body: Any) -> UpstreamCall:
    return UpstreamCall(endpoint, {"model": "mock-gpt", **body}, "rid-9", 10.0)


@pytest.fixture
def mock() -> MockProvider:
    return MockProvider(ProviderConfig(name="mock", kind="mock"))


async def test_chat_echoes_the_last_user_message(mock: MockProvider) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second question"},
    ]
    reply = await mock.send(call(Endpoint.CHAT, messages=messages))
    assert reply["object"] == "chat.completion"
    assert reply["id"] == "mock-rid-9"
    assert reply["model"] == "mock-gpt"
    assert reply["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": REPLY_PREFIX + "second question"}, "finish_reason": "stop", "logprobs": None}
    ]
    usage = reply["usage"]
    assert usage["prompt_tokens"] == estimate_tokens("second question")
    assert usage["completion_tokens"] == estimate_tokens(REPLY_PREFIX + "second question")
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_chat_with_content_parts(mock: MockProvider) -> None:
    content = [{"type": "text", "text": "part one"}, {"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "part two"}]
    reply = await mock.send(call(Endpoint.CHAT, messages=[{"role": "user", "content": content}]))
    assert reply["choices"][0]["message"]["content"] == REPLY_PREFIX + "part one  part two"


async def test_chat_without_user_message(mock: MockProvider) -> None:
    reply = await mock.send(call(Endpoint.CHAT, messages=[{"role": "system", "content": "only system"}]))
    assert reply["choices"][0]["message"]["content"] == REPLY_PREFIX


@pytest.mark.parametrize(("prompt", "echo"), [("say hi", "say hi"), (["a", "b"], "a b"), ([1, 2, 3], "")])
async def test_completions_echo_the_prompt(mock: MockProvider, prompt: Any, echo: str) -> None:
    reply = await mock.send(call(Endpoint.COMPLETIONS, prompt=prompt))
    assert reply["object"] == "text_completion"
    assert reply["choices"][0]["text"] == REPLY_PREFIX + echo


async def test_replies_are_deterministic(mock: MockProvider) -> None:
    first = await mock.send(call(Endpoint.CHAT, messages=[{"role": "user", "content": "same"}]))
    second = await mock.send(call(Endpoint.CHAT, messages=[{"role": "user", "content": "same"}]))
    assert first["choices"] == second["choices"] and first["usage"] == second["usage"]


async def test_embeddings(mock: MockProvider) -> None:
    reply = await mock.send(call(Endpoint.EMBEDDINGS, input=["alpha", "beta", "alpha"]))
    assert reply["object"] == "list"
    vectors = [item["embedding"] for item in reply["data"]]
    assert [item["index"] for item in reply["data"]] == [0, 1, 2]
    assert all(len(v) == DEFAULT_EMBEDDING_DIMENSIONS for v in vectors)
    assert vectors[0] == vectors[2] != vectors[1]
    assert all(-1.0 <= x <= 1.0 for v in vectors for x in v)
    assert reply["usage"]["prompt_tokens"] == reply["usage"]["total_tokens"] > 0


async def test_embeddings_dimensions_and_token_input(mock: MockProvider) -> None:
    wide = await mock.send(call(Endpoint.EMBEDDINGS, input="x", dimensions=40))
    assert len(wide["data"][0]["embedding"]) == 40
    tokens = await mock.send(call(Endpoint.EMBEDDINGS, input=[101, 102, 103]))
    assert len(tokens["data"]) == 1  # one token array is one input


async def stream_events(mock: MockProvider, upstream_call: UpstreamCall) -> list[dict[str, Any]]:
    stream = await mock.open_stream(upstream_call)
    try:
        return [event async for batch in stream for event in batch]
    finally:
        await stream.aclose()


async def test_chat_stream_one_chunk_per_word(mock: MockProvider) -> None:
    events = await stream_events(mock, call(Endpoint.CHAT, messages=[{"role": "user", "content": "one two three"}], stream=True))
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [e["choices"][0]["delta"]["content"] for e in events[1:-1]]
    assert pieces == ["Mock", " reply:", " one", " two", " three"]
    assert "".join(pieces) == REPLY_PREFIX + "one two three"
    assert events[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}
    assert all(e["object"] == "chat.completion.chunk" and e["id"] == "mock-rid-9" for e in events)
    assert all("usage" not in e for e in events)


async def test_stream_usage_chunk_only_when_asked(mock: MockProvider) -> None:
    events = await stream_events(mock, call(Endpoint.CHAT, messages=[{"role": "user", "content": "x"}], stream=True, stream_options={"include_usage": True}))
    assert events[-1]["choices"] == []
    assert events[-1]["usage"]["total_tokens"] > 0
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


async def test_completion_stream(mock: MockProvider) -> None:
    events = await stream_events(mock, call(Endpoint.COMPLETIONS, prompt="a b", stream=True))
    assert all(e["object"] == "text_completion" for e in events)
    assert "".join(e["choices"][0]["text"] for e in events) == REPLY_PREFIX + "a b"
    assert events[-1]["choices"][0]["finish_reason"] == "stop"


async def test_chunk_delay_paces_the_stream(mock: MockProvider) -> None:
    # Not a timing assertion: a paced stream must yield the same events as an unpaced one.
    paced = MockProvider(ProviderConfig(name="mock", kind="mock", chunk_delay_ms=1, latency_ms=1))
    upstream_call = call(Endpoint.CHAT, messages=[{"role": "user", "content": "a b c"}], stream=True)
    strip = lambda events: [e["choices"] for e in events]  # noqa: E731 - `created` may differ by a second
    assert strip(await stream_events(paced, upstream_call)) == strip(await stream_events(mock, upstream_call))


def test_estimate_tokens() -> None:
    assert [estimate_tokens(t) for t in ("", "a", "abcd", "abcde", "x" * 400)] == [1, 1, 1, 2, 100]
