"""A client that goes away cancels the upstream call, and the exchange is audited as `client_disconnected`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai

from gateway.testing.upstream import FakeUpstream, Reply
from support import async_sdk_client, audit_record_for, sdk_client, wait_until

USER = [{"role": "user", "content": "tell me a long story"}]


def test_closing_a_stream_cancels_the_upstream_stream(client: openai.OpenAI, upstream: FakeUpstream, store_dir: Path) -> None:
    upstream.enqueue(Reply(chunk_delay_s=0.2, words=50))  # ~10 s if it ran to the end
    stream = client.chat.completions.create(model="gpt-test", messages=USER, stream=True, extra_headers={"x-request-id": "disconnect-1"})
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    stream.close()
    wait_until(lambda: upstream.disconnects == 1, what="the upstream to see the gateway hang up")
    record = audit_record_for(store_dir, "disconnect-1")
    assert record["outcome"] == "client_disconnected"
    assert record["http_status"] == 499
    assert record["stream"] is True
    assert record["stream_chunks"] < 50


async def test_async_client_abandoning_a_stream(make_gateway: Any, upstream: FakeUpstream, store_dir: Path) -> None:
    gateway = make_gateway()
    upstream.enqueue(Reply(chunk_delay_s=0.2, words=50))
    client = async_sdk_client(gateway)
    try:
        stream = await client.chat.completions.create(model="gpt-test", messages=USER, stream=True, extra_headers={"x-request-id": "disconnect-2"})
        async for _ in stream:
            break
        await stream.close()
    finally:
        await client.close()
    wait_until(lambda: upstream.disconnects == 1, what="the upstream to see the gateway hang up")
    assert audit_record_for(store_dir, "disconnect-2")["outcome"] == "client_disconnected"


def test_disconnect_from_a_mock_stream_is_audited(make_gateway: Any, store_dir: Path) -> None:
    gateway = make_gateway(providers={"mock": {"kind": "mock", "chunk_delay_ms": 200}})
    with sdk_client(gateway) as client:
        stream = client.chat.completions.create(model="mock-gpt", messages=USER, stream=True, extra_headers={"x-request-id": "disconnect-3"})
        next(iter(stream))
        stream.close()
    record = audit_record_for(store_dir, "disconnect-3")
    assert (record["outcome"], record["http_status"]) == ("client_disconnected", 499)


def test_client_timeout_on_a_slow_reply_is_audited_as_disconnect(make_gateway: Any, upstream: FakeUpstream, store_dir: Path) -> None:
    gateway = make_gateway()
    upstream.enqueue(Reply(delay_s=3))
    with sdk_client(gateway, timeout=0.3) as client:
        try:
            client.chat.completions.create(model="gpt-test", messages=USER, extra_headers={"x-request-id": "disconnect-4"})
        except openai.APITimeoutError:
            pass
        else:
            raise AssertionError("the client was expected to time out")
    record = audit_record_for(store_dir, "disconnect-4")
    assert (record["outcome"], record["http_status"]) == ("client_disconnected", 499)


def test_gateway_serves_normally_after_disconnects(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(chunk_delay_s=0.2, words=50))
    stream = client.chat.completions.create(model="gpt-test", messages=USER, stream=True)
    next(iter(stream))
    stream.close()
    wait_until(lambda: upstream.disconnects == 1)
    reply = client.chat.completions.create(model="gpt-test", messages=USER)
    assert reply.choices[0].message.content == "echo: tell me a long story"
