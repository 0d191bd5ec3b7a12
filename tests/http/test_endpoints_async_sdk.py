"""The same endpoints through the official `AsyncOpenAI` client, including concurrent requests."""

from __future__ import annotations

import asyncio

import openai
import pytest

from gateway.providers.mock import REPLY_PREFIX
from gateway.testing.upstream import FakeUpstream, Reply

USER = [{"role": "user", "content": "hello async"}]
REPLIES = {"gpt-test": "echo: hello async", "mock-gpt": REPLY_PREFIX + "hello async"}
TARGETS = {"gpt-test": "fake/fake-model", "mock-gpt": "mock/mock-gpt"}


@pytest.mark.parametrize("model", REPLIES)
async def test_async_chat(async_client: openai.AsyncOpenAI, model: str) -> None:
    raw = await async_client.chat.completions.with_raw_response.create(model=model, messages=USER)
    reply = raw.parse()
    assert reply.choices[0].message.content == REPLIES[model]
    assert raw.headers["x-gateway-target"] == TARGETS[model]
    assert raw.headers["x-gateway-decision"] == "allow"


@pytest.mark.parametrize("model", REPLIES)
async def test_async_chat_stream_with_usage(async_client: openai.AsyncOpenAI, model: str) -> None:
    stream = await async_client.chat.completions.create(model=model, messages=USER, stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ("w0 w1 w2 w3 w4 " if model == "gpt-test" else REPLIES[model])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize("model", REPLIES)
async def test_async_completions(async_client: openai.AsyncOpenAI, model: str) -> None:
    reply = await async_client.completions.create(model=model, prompt="hello async")
    assert reply.choices[0].text == REPLIES[model]
    stream = await async_client.completions.create(model=model, prompt="hello async", stream=True)
    pieces = [chunk.choices[0].text async for chunk in stream if chunk.choices]
    assert len(pieces) >= 3
    assert "".join(pieces) == ("w0 w1 w2 w3 w4 " if model == "gpt-test" else REPLIES[model])


async def test_async_embeddings(async_client: openai.AsyncOpenAI, upstream: FakeUpstream) -> None:
    fake = await async_client.embeddings.create(model="gpt-test", input="abc")
    mock = await async_client.embeddings.create(model="mock-embedding", input=["abc", "def"])
    assert fake.data[0].embedding == [0.1, 0.2, 0.3]
    assert upstream.received[0].body["model"] == "fake-model"
    assert len(mock.data) == 2 and mock.data[0].embedding != mock.data[1].embedding


async def test_async_models(async_client: openai.AsyncOpenAI) -> None:
    listed = [model.id async for model in async_client.models.list()]
    assert sorted(listed) == ["gpt-test", "mock-embedding", "mock-gpt"]
    assert (await async_client.models.retrieve("mock-gpt")).id == "mock-gpt"
    with pytest.raises(openai.NotFoundError):
        await async_client.models.retrieve("missing")


async def test_async_errors_raise_the_sdk_classes(async_client: openai.AsyncOpenAI, upstream: FakeUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        await async_client.chat.completions.create(model="no-such-model", messages=USER)
    assert bad.value.code == "model_not_found"
    upstream.enqueue(Reply(status=500))
    with pytest.raises(openai.InternalServerError) as failed:
        await async_client.chat.completions.create(model="gpt-test", messages=USER)
    assert failed.value.status_code == 502
    assert failed.value.type == "upstream_error"


async def test_async_stream_that_breaks_raises(async_client: openai.AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(break_after=3))
    stream = await async_client.chat.completions.create(model="gpt-test", messages=USER, stream=True)
    received = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            received.append(chunk)
    assert len(received) == 3
    assert caught.value.type == "upstream_error"


async def test_concurrent_requests_all_complete(async_client: openai.AsyncOpenAI, upstream: FakeUpstream) -> None:
    async def one(index: int) -> str:
        model = "gpt-test" if index % 2 else "mock-gpt"
        reply = await async_client.chat.completions.create(model=model, messages=[{"role": "user", "content": f"n{index}"}])
        return reply.choices[0].message.content or ""

    async def streamed(index: int) -> str:
        stream = await async_client.chat.completions.create(model="gpt-test", messages=USER, stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    replies = await asyncio.gather(*(one(i) for i in range(20)), *(streamed(i) for i in range(10)))
    assert replies[:20] == [f"echo: n{i}" if i % 2 else f"{REPLY_PREFIX}n{i}" for i in range(20)]
    assert replies[20:] == ["w0 w1 w2 w3 w4 "] * 10
    assert len(upstream.received) == 20  # 10 fake non-streamed + 10 streamed
