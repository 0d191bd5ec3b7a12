"""Kill switches: an operator disables a target; every worker and instance obeys, audited, across restarts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.testing.redis_server import RedisServer
from gateway.testing.upstream import FakeUpstream
from support import audit_record_for, fake_provider, get, raw_request, read_audit, sdk_client, wait_until


def routed(upstream: FakeUpstream, backup: FakeUpstream, **extra: Any) -> dict[str, Any]:
    return {
        "providers": {"fake": fake_provider(upstream.base_url), "backup": fake_provider(backup.base_url)},
        "models": {"gpt-test": {"targets": [{"provider": "fake", "model": "primary"}, {"provider": "backup", "model": "second"}]}},
        **extra,
    }


def target_of(gateway: Any) -> str:
    with sdk_client(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    return str(raw.headers["x-gateway-target"])


def switch(gateway: Any, action: str, index: int = 0, reason: str | None = "provider incident #42") -> Any:
    body = json.dumps({"reason": reason}).encode() if reason is not None else b""
    return raw_request(f"{gateway.url}/admin/routes/gpt-test/targets/{index}/{action}", body, headers={"content-type": "application/json"})


def test_a_disabled_target_is_skipped_until_enabled(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream, store_dir: Path) -> None:
    gateway = make_gateway(**routed(upstream, backup))
    assert target_of(gateway) == "fake/primary"
    answer = switch(gateway, "disable")
    assert answer.status == 200 and answer.json()["disabled"] is True
    with sdk_client(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-gateway-target"] == "backup/second"
    record = audit_record_for(store_dir, raw.headers["x-request-id"])
    assert record["route"][0]["target"] == "fake/primary" and record["route"][0]["error"] == "disabled"
    state = get(f"{gateway.url}/admin/routes").json()["routes"]["gpt-test"]
    assert state[0]["disabled"]["reason"] == "provider incident #42" and state[1]["disabled"] is None
    actions = [r for r in read_audit(store_dir) if r["kind"] == "admin_action"]
    assert actions[-1]["event"]["action"] == "disable_target" and actions[-1]["event"]["reason"] == "provider incident #42"
    assert switch(gateway, "enable", reason=None).status == 200
    assert target_of(gateway) == "fake/primary"


def test_every_target_disabled_is_a_clear_503(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream) -> None:
    import openai

    gateway = make_gateway(**routed(upstream, backup))
    switch(gateway, "disable", 0)
    switch(gateway, "disable", 1)
    with sdk_client(gateway) as client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 503 and caught.value.response.json()["error"]["code"] == "no_target_available"


def test_switches_need_a_reason_and_an_existing_target(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream) -> None:
    gateway = make_gateway(**routed(upstream, backup))
    assert switch(gateway, "disable", reason=None).status == 400
    assert switch(gateway, "disable", reason="   ").status == 400
    assert switch(gateway, "disable", index=7).status == 404
    missing = raw_request(f"{gateway.url}/admin/routes/nope/targets/0/disable", b'{"reason": "x"}', headers={"content-type": "application/json"})
    assert missing.status == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_a_switch_survives_a_restart(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream) -> None:
    first = make_gateway(**routed(upstream, backup))
    switch(first, "disable")
    second = make_gateway(**routed(upstream, backup))  # a new process on the same store
    assert target_of(second) == "backup/second"


def test_a_switch_reaches_another_worker_through_the_local_store(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream) -> None:
    one = make_gateway(**routed(upstream, backup))
    other = make_gateway(**routed(upstream, backup))  # same store.local_dir: two workers of one instance
    assert target_of(other) == "fake/primary"
    switch(one, "disable")
    wait_until(lambda: target_of(other) == "backup/second", timeout=3, what="the other worker to follow")


def test_a_switch_reaches_every_instance_through_redis_within_a_second(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream, redis_server: RedisServer, redis_prefix: str, tmp_path: Path) -> None:
    def instance(name: str) -> Any:
        store = {"backend": "redis", "redis_url": redis_server.url, "key_prefix": redis_prefix}
        return make_gateway(**routed(upstream, backup, store=store, audit={"spool_dir": str(tmp_path / name)}))

    one, other = instance("one"), instance("two")
    assert target_of(other) == "fake/primary"
    switch(one, "disable")
    wait_until(lambda: target_of(other) == "backup/second", timeout=1.5, interval=0.05, what="the other instance to follow")
    switch(one, "enable", reason=None)
    wait_until(lambda: target_of(other) == "fake/primary", timeout=1.5, interval=0.05, what="the other instance to re-enable")
    third = instance("three")  # starts after the change: reads the state at start
    switch(one, "disable", 1)
    assert get(f"{third.url}/admin/routes").json()["routes"]["gpt-test"][0]["disabled"] is None
    wait_until(lambda: get(f"{third.url}/admin/routes").json()["routes"]["gpt-test"][1]["disabled"] is not None, timeout=1.5, what="instance three")
