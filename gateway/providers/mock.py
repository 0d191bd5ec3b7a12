"""The built-in `mock` provider: deterministic, in-process, no network and no key.

It serves the embedded default, tests and benchmarks. Chat and completions echo the last user text, so a
caller can see exactly what reached the provider (useful for redaction checks); streams split the reply
into one chunk per word in OpenAI's chunk format; embeddings are derived from a hash of the input.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

from gateway.config.model import ProviderConfig
from gateway.exchange import Endpoint
from gateway.providers.base import StreamEvent, UpstreamCall

REPLY_PREFIX = "Mock reply: "
DEFAULT_EMBEDDING_DIMENSIONS = 16


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token), enough for a deterministic `usage`."""
    return max(1, (len(text) + 3) // 4)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content-part arrays
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _prompt_text(call: UpstreamCall) -> str:
    body = call.body
    if call.endpoint is Endpoint.CHAT:
        messages = body.get("messages") or []
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return _text_of(message.get("content"))
        return ""
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else " ".join(p for p in prompt if isinstance(p, str))


class MockProvider:
    def __init__(self, config: ProviderConfig) -> None:
        self.name = config.name
        self._latency_s = config.latency_ms / 1000
        self._chunk_delay_s = config.chunk_delay_ms / 1000

    async def send(self, call: UpstreamCall) -> dict[str, Any]:
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        if call.endpoint is Endpoint.EMBEDDINGS:
            return self._embeddings(call)
        prompt = _prompt_text(call)
        reply = REPLY_PREFIX + prompt
        usage = _usage(prompt, reply)
        model = call.body.get("model", "")
        if call.endpoint is Endpoint.CHAT:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": "stop",
                "logprobs": None,
            }
            return _envelope(call, "chat.completion", model, [choice], usage)
        choice = {"index": 0, "text": reply, "finish_reason": "stop", "logprobs": None}
        return _envelope(call, "text_completion", model, [choice], usage)

    async def open_stream(self, call: UpstreamCall) -> MockStream:
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        return MockStream(call, self._chunk_delay_s)

    async def close(self) -> None:
        return None

    def _embeddings(self, call: UpstreamCall) -> dict[str, Any]:
        inputs = call.body.get("input", "")
        items = inputs if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int) else [inputs]
        dimensions = call.body.get("dimensions") or DEFAULT_EMBEDDING_DIMENSIONS
        data = [
            {"object": "embedding", "index": index, "embedding": _vector(str(item), dimensions)}
            for index, item in enumerate(items)
        ]
        prompt_tokens = sum(estimate_tokens(str(item)) for item in items)
        return {
            "object": "list",
            "data": data,
            "model": call.body.get("model", ""),
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }


class MockStream:
    """Yields the reply word by word, with the role chunk first and the finish (and usage) chunks last."""

    def __init__(self, call: UpstreamCall, chunk_delay_s: float) -> None:
        self._call = call
        self._chunk_delay_s = chunk_delay_s
        self.complete = False

    def __aiter__(self) -> AsyncIterator[list[StreamEvent]]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[list[StreamEvent]]:
        """One event per batch: the mock streams one chunk per word, like a model generating tokens."""
        events = self._events()
        for index, event in enumerate(events):
            if self._chunk_delay_s and index:
                await asyncio.sleep(self._chunk_delay_s)
            self.complete = index == len(events) - 1
            yield [event]

    def _events(self) -> list[StreamEvent]:
        call = self._call
        prompt = _prompt_text(call)
        reply = REPLY_PREFIX + prompt
        chat = call.endpoint is Endpoint.CHAT
        base = {
            "id": f"mock-{call.request_id}",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": call.body.get("model", ""),
        }
        events: list[StreamEvent] = []
        if chat:
            events.append({**base, "choices": [_chunk_choice({"role": "assistant", "content": ""}, None)]})
        for index, word in enumerate(reply.split(" ")):
            piece = word if index == 0 else " " + word
            choice = _chunk_choice({"content": piece}, None) if chat else _text_choice(piece, None)
            events.append({**base, "choices": [choice]})
        events.append({**base, "choices": [_chunk_choice({}, "stop") if chat else _text_choice("", "stop")]})
        options = call.body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            events.append({**base, "choices": [], "usage": _usage(prompt, reply)})
        return events

    async def aclose(self) -> None:
        return None


def _chunk_choice(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}


def _text_choice(text: str, finish_reason: str | None) -> dict[str, Any]:
    return {"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None}


def _usage(prompt: str, reply: str) -> dict[str, int]:
    prompt_tokens, completion_tokens = estimate_tokens(prompt), estimate_tokens(reply)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _envelope(call: UpstreamCall, kind: str, model: str, choices: list[Any], usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": f"mock-{call.request_id}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage,
    }


def _vector(text: str, dimensions: int) -> list[float]:
    """A unit-free deterministic vector: the same text always embeds the same way."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend(v / 2**31 for v in struct.unpack(">8i", digest))
        counter += 1
    return values[:dimensions]
