"""Security basics: the client's credentials stay at the gateway, the provider key never leaks anywhere."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from gateway.config import ConfigError, parse_config
from gateway.providers import build_provider
from gateway.providers.openai import OpenAIProvider
from gateway.upstream import UpstreamClient
from gateway.testing.upstream import FakeUpstream, Reply
from support import CLIENT_KEY, UPSTREAM_KEY, audit_path, fake_provider, free_port, read_audit, sdk_client, upstream_headers, wait_until

USER = [{"role": "user", "content": "hi"}]


def test_client_authorization_is_not_forwarded(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    client.chat.completions.create(model="gpt-test", messages=USER)
    list(client.chat.completions.create(model="gpt-test", messages=USER, stream=True))
    client.embeddings.create(model="gpt-test", input="x")
    client.completions.create(model="gpt-test", prompt="x")
    assert len(upstream.received) == 4
    for received in upstream.received:
        headers = upstream_headers(received)
        assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
        assert not any(CLIENT_KEY in value for value in headers.values())
        assert CLIENT_KEY.encode() not in received.raw


def test_provider_without_a_key_sends_no_authorization(make_gateway: Any, upstream: FakeUpstream) -> None:
    keyless = {"kind": "openai", "base_url": upstream.base_url}
    gateway = make_gateway(providers={"fake": keyless})
    with sdk_client(gateway) as client:
        client.chat.completions.create(model="gpt-test", messages=USER)
    headers = upstream_headers(upstream.received[0])
    assert "authorization" not in headers
    assert not any(CLIENT_KEY in value for value in headers.values())


def test_client_headers_are_not_relayed(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    client.chat.completions.create(
        model="gpt-test", messages=USER, extra_headers={"cookie": "session=abc", "x-api-key": "client-x-api-key", "openai-organization": "org-client"}
    )
    headers = upstream_headers(upstream.received[0])
    assert "cookie" not in headers
    assert "x-api-key" not in headers
    assert "openai-organization" not in headers


def test_provider_extra_headers_are_sent(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    client.chat.completions.create(model="gpt-test", messages=USER)
    list(client.chat.completions.create(model="gpt-test", messages=USER, stream=True))
    assert [upstream_headers(r)["x-extra"] for r in upstream.received] == ["extra-value", "extra-value"]


def test_provider_headers_may_not_set_authorization(upstream: FakeUpstream) -> None:
    config = {
        "providers": {"p": {"kind": "openai", "base_url": upstream.base_url, "headers": {"Authorization": "Bearer x"}}},
        "models": {"m": {"targets": [{"provider": "p"}]}},
    }
    with pytest.raises(ConfigError, match="providers.p.headers"):
        parse_config(config, "inline")


def test_provider_key_not_in_config_or_provider_reprs(upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_PROVIDER_KEY", UPSTREAM_KEY)
    data = {
        "providers": {"fake": {**fake_provider(upstream.base_url), "api_key": "${GW_TEST_PROVIDER_KEY}"}},
        "models": {"gpt-test": {"targets": [{"provider": "fake"}]}},
        "audit": {"hmac_key": "audit-hmac-secret-value"},
    }
    config = parse_config(data, "inline")
    provider_config = config.providers["fake"]
    assert provider_config.api_key is not None and provider_config.api_key.reveal() == UPSTREAM_KEY
    for text in (repr(config), str(config), repr(provider_config), str(provider_config), f"{provider_config.api_key}", repr(config.audit)):
        assert UPSTREAM_KEY not in text
        assert "audit-hmac-secret-value" not in text
    assert "********" in repr(provider_config)


async def test_provider_key_not_in_provider_repr(upstream: FakeUpstream) -> None:
    config = parse_config({"providers": {"fake": fake_provider(upstream.base_url)}, "models": {"m": {"targets": [{"provider": "fake"}]}}}, "inline")
    client = UpstreamClient()
    provider = build_provider(config.providers["fake"], client)
    assert isinstance(provider, OpenAIProvider)
    assert UPSTREAM_KEY not in repr(provider)
    assert UPSTREAM_KEY not in str(provider)
    assert UPSTREAM_KEY not in repr(client)
    assert "fake" in repr(provider)


def test_provider_key_never_logged_or_returned_across_failures(
    make_gateway: Any, upstream: FakeUpstream, store_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = make_gateway(providers={"fake": fake_provider(upstream.base_url, first_byte_s=0.2, idle_s=0.2)})
    upstream.enqueue(
        Reply(status=401, body={"error": {"message": f"bad key {UPSTREAM_KEY}"}}),
        Reply(status=500, body={"error": {"message": f"boom {UPSTREAM_KEY}"}}),
        Reply(status=400, body=b"not json at all"),
        Reply(reset=True),
        Reply(delay_s=2),
        Reply(body=b"garbage"),
    )
    bodies: list[str] = []
    with sdk_client(gateway) as client:
        for _ in range(6):
            with pytest.raises(openai.APIStatusError) as caught:
                client.chat.completions.create(model="gpt-test", messages=USER)
            bodies.append(caught.value.response.text)
        upstream.enqueue(Reply(break_after=2), Reply(chunk_delay_s=1), Reply(stream_garbage=True))
        for _ in range(3):
            with client.chat.completions.with_streaming_response.create(model="gpt-test", messages=USER, stream=True) as response:
                bodies.append(response.read().decode())
    assert all("error" in body for body in bodies)
    assert not any(UPSTREAM_KEY in body for body in bodies)
    assert caplog.records, "the failures were expected to log something"
    assert UPSTREAM_KEY not in caplog.text
    for record in caplog.records:
        assert UPSTREAM_KEY not in record.getMessage()
    wait_until(lambda: len(read_audit(store_dir)) == 9, what="9 audit records")
    assert UPSTREAM_KEY not in audit_path(store_dir).read_text()


def test_connect_failure_message_names_the_provider_not_the_key(make_gateway: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    closed = f"http://127.0.0.1:{free_port()}/v1"
    gateway = make_gateway(providers={"fake": fake_provider(closed)})
    with sdk_client(gateway) as client, pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-test", messages=USER)
    assert "'fake'" in caught.value.message
    assert UPSTREAM_KEY not in caught.value.response.text
    assert UPSTREAM_KEY not in caplog.text


@pytest.mark.parametrize(("status", "exception"), [(400, openai.BadRequestError), (404, openai.NotFoundError), (500, openai.InternalServerError)])
def test_provider_key_quoted_by_the_provider_is_masked(client: openai.OpenAI, upstream: FakeUpstream, status: int, exception: type[openai.APIStatusError]) -> None:
    upstream.enqueue(Reply(status=status, body={"error": {"message": f"problem with key {UPSTREAM_KEY} here"}}))
    with pytest.raises(exception) as caught:
        client.chat.completions.create(model="gpt-test", messages=USER)
    assert UPSTREAM_KEY not in caught.value.response.text
    assert "problem with key ******** here" in caught.value.message


def test_provider_key_quoted_in_a_mid_stream_error_is_masked(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(stream_error={"message": f"key {UPSTREAM_KEY} revoked"}))
    with client.chat.completions.with_streaming_response.create(model="gpt-test", messages=USER, stream=True) as response:
        text = response.read().decode()
    assert "upstream_stream_error" in text
    assert "key ******** revoked" in text
    assert UPSTREAM_KEY not in text


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_upstream_redirects_are_not_followed(client: openai.OpenAI, upstream: FakeUpstream, server_loop: Any, status: int) -> None:
    # base_url is the trust boundary: a redirect must not carry the provider's headers (here x-extra, which
    # could as well be an `api-key`) to another host.
    elsewhere = FakeUpstream()
    server_loop.run(elsewhere.start())
    try:
        upstream.enqueue(Reply(status=status, headers={"location": f"{elsewhere.base_url}/chat/completions"}, body={"moved": True}))
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="gpt-test", messages=USER)
        assert caught.value.status_code == 502
        assert caught.value.code == f"upstream_status_{status}"
        assert elsewhere.received == []
    finally:
        server_loop.run(elsewhere.close())
