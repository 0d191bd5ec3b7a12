"""Rate limits and token budgets through the running gateway: 429s with retry-after and x-ratelimit-*
headers, per app and tenant, shared by every gateway on one Redis, charged from streamed usage too."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.auth.api_keys import key_digest
from gateway.testing.redis_server import RedisServer
from gateway.testing.upstream import FakeUpstream
from support import sdk_client

KEYS = {"billing": "gwk_billing-0123456789abcdef0123", "support": "gwk_support-0123456789abcdef0123"}


def apps(**extra: Any) -> dict[str, Any]:
    keys = [{"sha256": key_digest(key), "app": app, "tenant": "acme"} for app, key in KEYS.items()]
    return {"auth": {"mode": "api_key", "api_keys": keys}, **extra}


def call(gateway: Any, app: str = "billing", **options: Any) -> Any:
    with sdk_client(gateway, api_key=KEYS[app]) as client:
        return client.chat.completions.with_raw_response.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}], **options)


def test_requests_per_minute_per_app(make_gateway: Any, upstream: FakeUpstream) -> None:
    gateway = make_gateway(**apps(rate_limits=[{"per": "app", "requests_per_minute": 3}]))
    remaining = [call(gateway).headers["x-ratelimit-remaining-requests"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    with pytest.raises(openai.RateLimitError) as caught:
        call(gateway)
    headers = caught.value.response.headers
    assert caught.value.response.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(headers["retry-after"]) <= 60 and headers["x-ratelimit-limit-requests"] == "3"
    assert len(upstream.received) == 3  # the refused request reached no provider
    assert call(gateway, "support").http_response.status_code == 200  # another app has its own counter


def test_tokens_per_minute_are_charged_from_the_reported_usage(make_gateway: Any, upstream: FakeUpstream) -> None:
    gateway = make_gateway(**apps(rate_limits=[{"per": ["tenant"], "tokens_per_minute": 20}]))
    call(gateway)  # the fake reports 12 tokens a reply
    time.sleep(0.2)  # charges are added off the request path
    assert call(gateway).headers["x-ratelimit-remaining-tokens"] == "8"
    time.sleep(0.2)
    with pytest.raises(openai.RateLimitError):
        call(gateway, "support")  # same tenant: the same counter


def test_budgets_are_charged_from_streamed_usage(make_gateway: Any, upstream: FakeUpstream) -> None:
    gateway = make_gateway(**apps(budgets=[{"per": "app", "tokens": 20, "period": "day"}]))
    for _ in range(2):
        with sdk_client(gateway, api_key=KEYS["billing"]) as client:
            stream = client.chat.completions.create(
                model="gpt-test", stream=True, stream_options={"include_usage": True}, messages=[{"role": "user", "content": "hi"}]
            )
            assert [chunk.usage.total_tokens for chunk in stream if chunk.usage] == [12]
        time.sleep(0.2)
    with pytest.raises(openai.RateLimitError) as caught:
        call(gateway)
    assert caught.value.response.json()["error"]["code"] == "budget_exceeded"


def test_a_stream_without_usage_is_charged_an_estimate(make_gateway: Any, upstream: FakeUpstream) -> None:
    gateway = make_gateway(**apps(budgets=[{"per": "app", "tokens": 10}]))
    with sdk_client(gateway, api_key=KEYS["billing"]) as client:
        list(client.chat.completions.create(model="gpt-test", stream=True, messages=[{"role": "user", "content": "hi " * 30}]))
    time.sleep(0.2)  # about 30 tokens estimated from the prompt and the text relayed: the budget is spent
    with pytest.raises(openai.RateLimitError):
        call(gateway)


def test_limits_can_name_models(make_gateway: Any, upstream: FakeUpstream) -> None:
    gateway = make_gateway(**apps(rate_limits=[{"per": "app", "requests_per_minute": 1, "models": ["mock-*"]}]))
    for _ in range(3):
        assert "x-ratelimit-limit-requests" not in call(gateway).headers  # gpt-test is not limited


def test_two_gateways_on_one_redis_share_one_limit(make_gateway: Any, upstream: FakeUpstream, redis_server: RedisServer, redis_prefix: str, tmp_path: Path) -> None:
    def instance(name: str) -> Any:
        store = {"backend": "redis", "redis_url": redis_server.url, "key_prefix": redis_prefix}
        return make_gateway(**apps(store=store, audit={"spool_dir": str(tmp_path / name)}, rate_limits=[{"per": "app", "requests_per_minute": 4}]))

    one, two = instance("one"), instance("two")
    statuses = []
    for gateway in (one, two, one, two, one, two):
        try:
            statuses.append(call(gateway).http_response.status_code)
        except openai.RateLimitError:
            statuses.append(429)
    assert statuses == [200, 200, 200, 200, 429, 429]


def test_limits_that_cannot_be_counted_refuse_with_a_clear_503(make_gateway: Any, upstream: FakeUpstream, tmp_path: Path) -> None:
    server = RedisServer()  # never started: nothing listens on its port
    store = {"backend": "redis", "redis_url": server.url, "key_prefix": "x:"}
    gateway = make_gateway(**apps(store=store, audit={"spool_dir": str(tmp_path / "spool")}, rate_limits=[{"per": "app", "requests_per_minute": 5}]))
    with pytest.raises(openai.APIStatusError) as caught:
        call(gateway)
    assert caught.value.status_code == 503 and caught.value.response.json()["error"]["code"] == "limits_unavailable"
    assert upstream.received == []
    server.close()
