"""The `openai` provider adapter on its own, against the fake upstream (a real server on 127.0.0.1).

Each upstream failure must come out as the most specific `gateway.errors` class; nothing from the upstream client leaks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.config.model import ProviderConfig, UpstreamTimeouts
from gateway.errors import (
    UpstreamBadResponse,
    UpstreamConnectError,
    UpstreamError,
    UpstreamRejected,
    UpstreamStatusError,
    UpstreamTimeout,
)
from gateway.exchange import Endpoint
from gateway.providers.base import UpstreamCall
from gateway.providers.openai import OpenAIProvider
from gateway.secret import Secret
from gateway.upstream import UpstreamClient
from gateway.testing.upstream import FakeUpstream, Reply
from support import UPSTREAM_KEY, free_port, upstream_headers

BODY = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
STREAM_BODY = {**BODY, "stream": True}


def call(body: dict[str, Any] = BODY, *, endpoint: Endpoint = Endpoint.CHAT, request_id: str = "rid-1", timeout_s: float = 10.0) -> UpstreamCall:
    return UpstreamCall(endpoint, body, request_id, timeout_s)


def provider_config(base_url: str, **timeouts: float) -> ProviderConfig:
    return ProviderConfig(
        name="fake",
        kind="openai",
        base_url=base_url,
        api_key=Secret(UPSTREAM_KEY),
        headers={"x-extra": "extra-value"},
        timeouts=UpstreamTimeouts(**{"connect_s": 2.0, "first_byte_s": 5.0, "idle_s": 5.0, **timeouts}),
    )


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    upstream_client = UpstreamClient()
    yield upstream_client
    await upstream_client.close()


@pytest.fixture
def provider(upstream: FakeUpstream, client: UpstreamClient) -> OpenAIProvider:
    return OpenAIProvider(provider_config(upstream.base_url), client)


# -- what goes out ---------------------------------------------------------------------------------------------
async def test_send_posts_the_body_with_provider_headers(provider: OpenAIProvider, upstream: FakeUpstream) -> None:
    reply = await provider.send(call())
    assert reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"]["content"] == "echo: hi"
    received = upstream.received[0]
    assert (received.method, received.path, received.body) == ("POST", "/v1/chat/completions", BODY)
    headers = upstream_headers(received)
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert headers["x-extra"] == "extra-value"
    assert headers["x-request-id"] == "rid-1"
    assert headers["content-type"] == "application/json"


@pytest.mark.parametrize(("endpoint", "path"), [(Endpoint.COMPLETIONS, "/v1/completions"), (Endpoint.EMBEDDINGS, "/v1/embeddings")])
async def test_endpoint_paths(provider: OpenAIProvider, upstream: FakeUpstream, endpoint: Endpoint, path: str) -> None:
    await provider.send(call({"model": "fake-model", "prompt": "p", "input": "i"}, endpoint=endpoint))
    assert upstream.received[0].path == path


async def test_keyless_provider_sends_no_authorization(upstream: FakeUpstream, client: UpstreamClient) -> None:
    keyless = ProviderConfig(name="local", kind="openai", base_url=upstream.base_url)
    await OpenAIProvider(keyless, client).send(call(request_id=""))
    headers = upstream_headers(upstream.received[0])
    assert "authorization" not in headers
    assert "x-request-id" not in headers


def test_repr_hides_the_key(provider: OpenAIProvider) -> None:
    assert UPSTREAM_KEY not in repr(provider)
    assert repr(provider).startswith("OpenAIProvider(name='fake'")


# -- failures before a reply -----------------------------------------------------------------------------------
ERRORS = [
    (Reply(status=500), UpstreamStatusError, 502, "upstream_status_500"),
    (Reply(status=503, body=b"down"), UpstreamStatusError, 502, "upstream_status_503"),
    (Reply(status=401), UpstreamStatusError, 502, "upstream_auth_failed"),
    (Reply(status=403), UpstreamStatusError, 502, "upstream_auth_failed"),
    (Reply(status=400, body={"error": {"message": "bad"}}), UpstreamRejected, 400, "upstream_rejected"),
    (Reply(status=404), UpstreamRejected, 404, "upstream_rejected"),
    (Reply(status=422), UpstreamRejected, 422, "upstream_rejected"),
    (Reply(status=429, headers={"retry-after": "2"}), UpstreamRejected, 429, "upstream_rejected"),
    (Reply(body=b"not json"), UpstreamBadResponse, 502, "upstream_bad_response"),
    (Reply(body=b"[1]"), UpstreamBadResponse, 502, "upstream_bad_response"),
    (Reply(reset=True), UpstreamConnectError, 502, "upstream_connect_error"),
]


@pytest.mark.parametrize(("reply", "error_class", "status", "code"), ERRORS)
async def test_send_maps_failures(provider: OpenAIProvider, upstream: FakeUpstream, reply: Reply, error_class: type[UpstreamError], status: int, code: str) -> None:
    upstream.enqueue(reply)
    with pytest.raises(error_class) as caught:
        await provider.send(call())
    assert type(caught.value) is error_class
    assert (caught.value.status, caught.value.code) == (status, code)
    assert UPSTREAM_KEY not in caught.value.message


async def test_rejected_types_follow_the_status(provider: OpenAIProvider, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(status=429, headers={"retry-after": "2"}), Reply(status=422, body={"error": {"message": "unprocessable"}}))
    with pytest.raises(UpstreamRejected) as limited:
        await provider.send(call())
    assert limited.value.type == "rate_limit_error"
    assert limited.value.headers == {"retry-after": "2"}
    with pytest.raises(UpstreamRejected) as invalid:
        await provider.send(call())
    assert invalid.value.type == "invalid_request_error"
    assert invalid.value.message == "provider 'fake': unprocessable"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": {"message": "nested message"}}, "nested message"),
        ({"error": "plain string error"}, "plain string error"),
        (b"<html>oops</html>", "<html>oops</html>"),
        ({"detail": "unknown shape"}, "HTTP 500"),
    ],
)
async def test_upstream_error_wording_is_kept(provider: OpenAIProvider, upstream: FakeUpstream, body: Any, message: str) -> None:
    upstream.enqueue(Reply(status=500, body=body))
    with pytest.raises(UpstreamStatusError) as caught:
        await provider.send(call())
    assert caught.value.message == f"provider 'fake' failed with HTTP 500: {message}"


async def test_connection_refused(client: UpstreamClient) -> None:
    provider = OpenAIProvider(provider_config(f"http://127.0.0.1:{free_port()}/v1"), client)
    with pytest.raises(UpstreamConnectError) as caught:
        await provider.send(call())
    assert caught.value.code == "upstream_connect_error"
    assert "cannot connect to provider 'fake'" in caught.value.message


async def test_connect_timeout(client: UpstreamClient, unaccepting_port: int) -> None:
    provider = OpenAIProvider(provider_config(f"http://127.0.0.1:{unaccepting_port}/v1", connect_s=0.2), client)
    with pytest.raises(UpstreamTimeout) as caught:
        await provider.send(call())
    assert caught.value.status == 504
    assert caught.value.code == "upstream_connect_timeout"


async def test_first_byte_timeout(upstream: FakeUpstream, client: UpstreamClient) -> None:
    provider = OpenAIProvider(provider_config(upstream.base_url, first_byte_s=0.2), client)
    upstream.enqueue(Reply(delay_s=3))
    with pytest.raises(UpstreamTimeout) as caught:
        await provider.send(call())
    assert (caught.value.status, caught.value.code) == (504, "upstream_first_byte_timeout")


async def test_call_deadline_caps_the_wait_for_the_first_byte(provider: OpenAIProvider, upstream: FakeUpstream) -> None:
    # first_byte_s is 5 s here; the call's own deadline (the route's timeout_s) is shorter and wins.
    upstream.enqueue(Reply(delay_s=3))
    with pytest.raises(UpstreamTimeout) as caught:
        await provider.send(call(timeout_s=0.2))
    assert caught.value.code == "upstream_deadline_exceeded"


# -- streams -----------------------------------------------------------------------------------------------------
async def collect(stream: Any) -> list[dict[str, Any]]:
    return [event async for batch in stream for event in batch]


async def test_stream_yields_parsed_events_until_done(provider: OpenAIProvider, upstream: FakeUpstream) -> None:
    stream = await provider.open_stream(call(STREAM_BODY))
    events = await collect(stream)
    await stream.aclose()
    assert len(events) == 7
    assert all(isinstance(e, dict) and e["object"] == "chat.completion.chunk" for e in events)
    assert [e["choices"][0]["delta"].get("content") for e in events[1:6]] == ["w0 ", "w1 ", "w2 ", "w3 ", "w4 "]
    assert upstream.received[0].body == STREAM_BODY


async def test_stream_rejected_before_it_starts(provider: OpenAIProvider, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(status=429), Reply(body={"not": "a stream"}))
    with pytest.raises(UpstreamRejected):
        await provider.open_stream(call(STREAM_BODY))
    with pytest.raises(UpstreamBadResponse) as caught:
        await provider.open_stream(call(STREAM_BODY))
    assert "application/json" in caught.value.message


STREAM_ERRORS = [
    (Reply(break_after=3), {}, UpstreamConnectError, "upstream_stream_broken", 3),
    (Reply(omit_done=True), {}, UpstreamConnectError, "upstream_stream_truncated", 7),
    (Reply(stream_garbage=True), {}, UpstreamBadResponse, "upstream_bad_response", 2),
    (Reply(stream_error={"message": "overloaded"}), {}, UpstreamStatusError, "upstream_stream_error", 2),
    (Reply(chunk_delay_s=2), {"idle_s": 0.2}, UpstreamTimeout, "upstream_idle_timeout", 1),
]


@pytest.mark.parametrize(("reply", "timeouts", "error_class", "code", "before"), STREAM_ERRORS)
async def test_stream_failures_midway(
    upstream: FakeUpstream, client: UpstreamClient, reply: Reply, timeouts: dict[str, float], error_class: type[UpstreamError], code: str, before: int
) -> None:
    provider = OpenAIProvider(provider_config(upstream.base_url, **timeouts), client)
    upstream.enqueue(reply)
    stream = await provider.open_stream(call(STREAM_BODY))
    events: list[dict[str, Any]] = []
    with pytest.raises(error_class) as caught:
        async for batch in stream:
            events.extend(batch)
    await stream.aclose()
    assert type(caught.value) is error_class
    assert caught.value.code == code
    assert len(events) == before


async def test_stream_aclose_hangs_up_on_the_upstream(provider: OpenAIProvider, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(chunk_delay_s=0.2, words=50))
    stream = await provider.open_stream(call(STREAM_BODY))
    events = stream.__aiter__()
    await events.__anext__()
    await stream.aclose()
    await stream.aclose()  # safe twice
    for _ in range(250):  # the upstream notices on its own loop thread
        if upstream.disconnects:
            break
        await asyncio.sleep(0.02)
    assert upstream.disconnects == 1


async def test_stream_event_over_the_size_bound_is_a_bad_response(provider: OpenAIProvider, upstream: FakeUpstream) -> None:
    # An upstream that never ends its event must not make the gateway buffer without bound (8 MiB per event).
    upstream.enqueue(Reply(stream_raw=b"data: " + b"x" * (9 * 1024 * 1024)))
    stream = await provider.open_stream(call(STREAM_BODY))
    events: list[dict[str, Any]] = []
    with pytest.raises(UpstreamBadResponse) as caught:
        async for batch in stream:
            events.extend(batch)
    await stream.aclose()
    assert len(events) == 2
    assert "larger than" in caught.value.message


async def test_stream_events_split_across_reads_are_reassembled(provider: OpenAIProvider, upstream: FakeUpstream) -> None:
    # Every read ends mid-event, so some reads complete no event at all: they must yield nothing, not fail.
    upstream.enqueue(Reply(split_events=True))
    stream = await provider.open_stream(call(STREAM_BODY))
    events = await collect(stream)
    await stream.aclose()
    assert [e["choices"][0]["delta"].get("content") for e in events[1:6]] == ["w0 ", "w1 ", "w2 ", "w3 ", "w4 "]
    assert events[-1]["choices"][0]["finish_reason"] == "stop"


async def test_connection_is_reused_when_the_body_ends_after_done(provider: OpenAIProvider, upstream: FakeUpstream) -> None:
    # [DONE] and the end of the chunked body arrive in separate reads: the connection must still go back to
    # the pool instead of being closed (which would cost every stream a new TCP/TLS handshake).
    upstream.enqueue(Reply(done_gap_s=0.05), Reply(done_gap_s=0.05))
    for _ in range(2):
        stream = await provider.open_stream(call(STREAM_BODY))
        assert len(await collect(stream)) == 7
        await stream.aclose()
    first, second = upstream.received
    assert first.peer_port == second.peer_port


async def test_connection_of_an_unfinished_stream_is_not_reused(provider: OpenAIProvider, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(chunk_delay_s=0.05, words=20))
    stream = await provider.open_stream(call(STREAM_BODY))
    await stream.__aiter__().__anext__()
    await stream.aclose()  # mid-body: this connection cannot carry another request
    await provider.send(call())
    first, second = upstream.received
    assert first.peer_port != second.peer_port


async def test_a_slow_first_byte_is_bounded_by_first_byte_s_not_idle_s(upstream: FakeUpstream, client: UpstreamClient) -> None:
    # A model may think for long before its headers (non-streamed replies); idle_s only bounds the gaps after.
    provider = OpenAIProvider(provider_config(upstream.base_url, first_byte_s=5, idle_s=0.2), client)
    upstream.enqueue(Reply(delay_s=0.6))
    reply = await provider.send(call())
    assert reply["choices"][0]["message"]["content"].startswith("echo")
    upstream.enqueue(Reply(delay_s=0.6, chunk_delay_s=0.5))  # then a stream that stalls past idle_s
    stream = await provider.open_stream(call(STREAM_BODY))
    with pytest.raises(UpstreamTimeout) as caught:
        await collect(stream)
    await stream.aclose()
    assert caught.value.code == "upstream_idle_timeout"
