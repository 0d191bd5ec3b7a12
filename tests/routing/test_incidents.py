"""Incident switches: an operator blocks all traffic or forces it onto one model, globally or per app;
every worker and instance obeys, audited, across restarts, visible in /readyz and /metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.auth.api_keys import key_digest
from gateway.testing.redis_server import RedisServer
from gateway.testing.upstream import FakeUpstream
from policy_support import write_policies
from support import RawResponse, audit_record_for, fake_provider, get, metric_sum, parse_metrics, raw_request, read_audit, sdk_client, wait_until

USER = [{"role": "user", "content": "hi"}]
LOCAL_ADMIN = "local@127.0.0.1"  # who an admin is with auth.mode none: the loopback caller (gateway.http.roles.actor)
OPS = "ops"  # the admin API key's app
ADMIN_KEY, BILLING_KEY, SUPPORT_KEY = "gwk_ops-admin-key-0001", "gwk_billing-app-key-0002", "gwk_support-app-key-0003"
API_KEYS = {
    "mode": "api_key",
    "api_keys": [
        {"sha256": key_digest(ADMIN_KEY), "app": "ops", "roles": ["admin"]},
        {"sha256": key_digest(BILLING_KEY), "app": "billing"},
        {"sha256": key_digest(SUPPORT_KEY), "app": "support"},
    ],
}


def routed(upstream: FakeUpstream, backup: FakeUpstream, **extra: Any) -> dict[str, Any]:
    """`gpt-test` on the fake upstream, `safe-model` on the backup one: the fallback target of the tests."""
    return {
        "providers": {"fake": fake_provider(upstream.base_url), "backup": fake_provider(backup.base_url), "mock": {"kind": "mock"}},
        "models": {
            "gpt-test": {"targets": [{"provider": "fake", "model": "primary"}]},
            "safe-model": {"targets": [{"provider": "backup", "model": "safe"}]},
        },
        **extra,
    }


def switch(gateway: Any, scope: str = "global", *, token: str | None = None, **body: Any) -> RawResponse:
    path = "global" if scope == "global" else f"apps/{scope}"
    headers = {"content-type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    return raw_request(f"{gateway.url}/admin/incidents/{path}", json.dumps(body).encode(), headers=headers)


def chat(gateway: Any, key: str | None = None, model: str = "gpt-test") -> Any:
    """A chat call through the SDK; returns the raw response (headers included), raises the SDK's error."""
    with sdk_client(gateway, **({"api_key": key} if key else {})) as client:
        return client.chat.completions.with_raw_response.create(model=model, messages=USER)


def blocked(gateway: Any, key: str | None = None) -> bool:
    try:
        chat(gateway, key)
    except openai.InternalServerError as error:
        return error.status_code == 503 and error.response.json()["error"]["code"] == "incident_block"
    return False


def target(gateway: Any, key: str | None = None) -> str:
    return str(chat(gateway, key).headers["x-gateway-target"])


def test_a_global_block_refuses_everything_before_any_provider(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream, store_dir: Path) -> None:
    gateway = make_gateway(**routed(upstream, backup))
    answer = switch(gateway, action="block", reason="provider key leaked, INC-7")
    assert answer.status == 200 and answer.json()["global"]["action"] == "block"
    with sdk_client(gateway) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="gpt-test", messages=USER)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-test", messages=USER, stream=True)
        with pytest.raises(openai.InternalServerError):
            client.embeddings.create(model="mock-embedding", input="x")
    error = caught.value.response.json()["error"]
    assert caught.value.status_code == 503 and error["type"] == "service_unavailable" and error["code"] == "incident_block"
    assert "An operator has stopped traffic" in error["message"] and "provider key leaked, INC-7" in error["message"]
    assert caught.value.response.headers["x-gateway-decision"] == "block"
    assert upstream.received == [] and backup.received == []
    record = audit_record_for(store_dir, caught.value.response.headers["x-request-id"])
    assert record["outcome"] == "blocked" and record["http_status"] == 503 and record["error"]["code"] == "incident_block"
    [decision] = record["decisions"]
    assert {key: decision[key] for key in ("policy", "rule", "phase", "action", "mode", "verdict", "detail")} == {
        "policy": "incident", "rule": "global", "phase": "request", "action": "block", "mode": "enforce", "verdict": "block",
        "detail": f"provider key leaked, INC-7 (by {LOCAL_ADMIN})",
    }
    assert switch(gateway, action="clear").status == 200
    assert target(gateway) == "fake/primary"


def test_fallback_sends_every_chat_to_the_named_model(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream, store_dir: Path) -> None:
    gateway = make_gateway(**routed(upstream, backup))
    assert switch(gateway, action="fallback", model="safe-model", reason="primary provider degraded").status == 200
    raw = chat(gateway)
    assert raw.headers["x-gateway-decision"] == "fallback" and raw.headers["x-gateway-target"] == "backup/safe"
    with sdk_client(gateway) as client:
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(model="gpt-test", messages=USER, stream=True) if chunk.choices)
        vector = client.embeddings.create(model="mock-embedding", input="x")  # embeddings are never moved to another model
    assert streamed and vector.data
    assert upstream.received == [] and [received.body["model"] for received in backup.received] == ["safe", "safe"]
    record = audit_record_for(store_dir, raw.headers["x-request-id"])
    assert record["model"] == "gpt-test" and record["route"][0]["target"] == "backup/safe" and record["outcome"] == "ok"
    decision = record["decisions"][0]
    assert (decision["policy"], decision["rule"], decision["verdict"]) == ("incident", "global", "fallback")
    assert decision["detail"].startswith("gpt-test -> safe-model; primary provider degraded")
    assert chat(gateway, model="safe-model").headers["x-gateway-decision"] == "allow"  # already there: nothing to move
    switch(gateway, action="clear")
    assert target(gateway) == "fake/primary"


def test_an_app_switch_applies_to_that_app_and_overrides_the_global_one(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream) -> None:
    gateway = make_gateway(**routed(upstream, backup, auth=API_KEYS))
    assert switch(gateway, "billing", token=ADMIN_KEY, action="block", reason="billing leaks PII").status == 200
    assert blocked(gateway, BILLING_KEY) and target(gateway, SUPPORT_KEY) == "fake/primary"
    with sdk_client(gateway, api_key=BILLING_KEY) as client, pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-test", messages=USER)
    assert "for app 'billing'" in caught.value.response.json()["error"]["message"]

    switch(gateway, token=ADMIN_KEY, action="block", reason="full stop")
    switch(gateway, "billing", token=ADMIN_KEY, action="fallback", model="safe-model", reason="billing may use the safe model")
    assert blocked(gateway, SUPPORT_KEY) and target(gateway, BILLING_KEY) == "backup/safe"  # the app's own switch wins
    state = get(f"{gateway.url}/readyz").json()["incidents"]
    assert state["global"]["action"] == "block" and state["apps"]["billing"]["model"] == "safe-model"

    switch(gateway, "billing", token=ADMIN_KEY, action="clear")
    assert blocked(gateway, BILLING_KEY)  # back under the global switch
    switch(gateway, token=ADMIN_KEY, action="clear", reason="resolved")
    assert target(gateway, BILLING_KEY) == "fake/primary" and target(gateway, SUPPORT_KEY) == "fake/primary"


def test_switches_are_checked_before_they_are_stored(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream, store_dir: Path) -> None:
    gateway = make_gateway(**routed(upstream, backup))
    unknown = switch(gateway, action="fallback", model="gpt-5-imaginary", reason="x")
    assert unknown.status == 400 and unknown.json()["error"]["code"] == "model_not_found" and unknown.json()["error"]["param"] == "model"
    cases = [
        ({"action": "block"}, "missing_field"),                    # no reason
        ({"action": "block", "reason": "  "}, "missing_field"),
        ({"action": "fallback", "reason": "x"}, "missing_field"),  # no model
        ({"action": "pause", "reason": "x"}, "invalid_value"),
        ({"reason": "x"}, "invalid_value"),
        ({"action": "block", "model": "safe-model", "reason": "x"}, "invalid_value"),
        ({"action": "block", "reason": "x", "resaon": "typo"}, "unknown_field"),
    ]
    for body, code in cases:
        answer = switch(gateway, **body)
        assert (answer.status, answer.json()["error"]["code"]) == (400, code), body
    not_json = raw_request(f"{gateway.url}/admin/incidents/global", b"{block", headers={"content-type": "application/json"})
    assert not_json.status == 400 and not_json.json()["error"]["code"] == "invalid_json"
    assert get(f"{gateway.url}/admin/incidents").json() == {"global": None, "apps": {}}
    assert target(gateway) == "fake/primary"
    assert not [r for r in read_audit(store_dir) if r["kind"] == "admin_action"]


def test_only_admins_switch_and_every_change_is_audited_with_who(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream, store_dir: Path) -> None:
    gateway = make_gateway(**routed(upstream, backup, auth=API_KEYS))
    refused = switch(gateway, token=BILLING_KEY, action="block", reason="x")
    assert refused.status == 403 and refused.json()["error"]["code"] == "admin_required"
    assert switch(gateway, action="block", reason="x").status == 401  # on the loopback, but identities are configured
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert raw_request(f"{gateway.url}/admin/incidents", method="GET", headers={"Authorization": f"Bearer {BILLING_KEY}"}).status == 403
    assert target(gateway, SUPPORT_KEY) == "fake/primary"

    switch(gateway, token=ADMIN_KEY, action="block", reason="INC-9 stop")
    switch(gateway, "support", token=ADMIN_KEY, action="fallback", model="safe-model", reason="INC-9 support on safe")
    switch(gateway, "support", token=ADMIN_KEY, action="clear")
    switch(gateway, token=ADMIN_KEY, action="clear", reason="INC-9 over")
    assert raw_request(f"{gateway.url}/admin/incidents", method="GET", headers=admin).json() == {"global": None, "apps": {}}
    wait_until(lambda: len([r for r in read_audit(store_dir) if r["kind"] == "admin_action"]) == 4, what="four admin_action records")
    events = [r["event"] for r in read_audit(store_dir) if r["kind"] == "admin_action"]
    assert [(e["action"], e["scope"], e["model"], e["reason"]) for e in events] == [
        ("incident_block", "global", None, "INC-9 stop"),
        ("incident_fallback", "app:support", "safe-model", "INC-9 support on safe"),
        ("incident_clear", "app:support", None, ""),
        ("incident_clear", "global", None, "INC-9 over"),
    ]
    assert {e["actor"] for e in events} == {OPS}  # the admin's identity, not just an address


def test_readyz_and_metrics_show_the_switches(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream) -> None:
    gateway = make_gateway(**routed(upstream, backup))
    assert get(f"{gateway.url}/readyz").json()["incidents"] == {"global": None, "apps": {}}
    switch(gateway, action="block", reason="INC-1")
    switch(gateway, "billing", action="fallback", model="safe-model", reason="INC-1 billing")
    ready = get(f"{gateway.url}/readyz")
    assert ready.status == 200 and ready.json()["status"] == "ready"  # a deliberate block is not unreadiness
    incidents = ready.json()["incidents"]
    assert incidents["global"]["reason"] == "INC-1" and incidents["global"]["actor"] == LOCAL_ADMIN and incidents["global"]["since"] > 0
    assert incidents["apps"] == {"billing": {**incidents["apps"]["billing"], "action": "fallback", "model": "safe-model", "reason": "INC-1 billing"}}

    def gauge(**labels: str) -> float:
        return metric_sum(parse_metrics(get(f"{gateway.url}/metrics").body.decode()), "gateway_incident_switch", **labels)

    assert gauge(scope="global", action="block") == 1 and gauge(scope="app:billing", action="fallback") == 1
    switch(gateway, action="fallback", model="safe-model", reason="INC-1 softened")
    assert gauge(scope="global", action="block") == 0 and gauge(scope="global", action="fallback") == 1
    switch(gateway, action="clear")
    switch(gateway, "billing", action="clear")
    assert gauge() == 0


def test_switches_survive_a_restart_and_reach_the_other_workers(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream, store_dir: Path) -> None:
    one = make_gateway(**routed(upstream, backup))
    other = make_gateway(**routed(upstream, backup))  # same store.local_dir: two workers of one instance
    assert target(other) == "fake/primary"
    switch(one, action="fallback", model="safe-model", reason="INC-3")
    wait_until(lambda: target(other) == "backup/safe", timeout=3, what="the other worker to follow")
    assert json.loads((store_dir / "incidents.json").read_text())[0]["model"] == "safe-model"
    restarted = make_gateway(**routed(upstream, backup))  # a new process on the same store
    assert target(restarted) == "backup/safe"
    switch(restarted, action="clear")
    wait_until(lambda: target(one) == "fake/primary", timeout=3, what="the first worker to clear")


def test_switches_reach_every_instance_through_redis_within_a_second(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream, redis_server: RedisServer, redis_prefix: str, tmp_path: Path) -> None:
    def instance(name: str) -> Any:
        store = {"backend": "redis", "redis_url": redis_server.url, "key_prefix": redis_prefix}
        return make_gateway(**routed(upstream, backup, store=store, audit={"spool_dir": str(tmp_path / name)}))

    one, other = instance("one"), instance("two")
    assert target(other) == "fake/primary"
    switch(one, action="block", reason="INC-4")
    wait_until(lambda: blocked(other), timeout=1.5, interval=0.05, what="the other instance to block")
    switch(one, action="clear")
    wait_until(lambda: not blocked(other), timeout=1.5, interval=0.05, what="the other instance to clear")
    switch(one, "anonymous", action="fallback", model="safe-model", reason="INC-4 anonymous on safe")
    third = instance("three")  # starts after the change: reads the state at start
    assert target(third) == "backup/safe"
    wait_until(lambda: target(other) == "backup/safe", timeout=1.5, interval=0.05, what="the other instance to fall back")
    switch(third, "anonymous", action="clear")
    wait_until(lambda: target(one) == "fake/primary" and target(other) == "fake/primary", timeout=1.5, interval=0.05, what="every instance to clear")


def test_a_forced_fallback_is_pinned_against_a_policy_fallback(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream, tmp_path: Path) -> None:
    """The operator's model wins: a policy's own fallback may not move the exchange back off it (it blocks,
    as a second fallback does), so traffic the operator moved away never reaches the old provider."""
    write_policies(tmp_path / "policies", route="""
        rules:
          - {id: big-to-primary, phase: request, check: {limits: {parameters: {max_tokens: {max: 100}}}}, action: fallback, fallback: {model: gpt-test}}
    """)
    gateway = make_gateway(**routed(upstream, backup))
    switch(gateway, action="fallback", model="safe-model", reason="INC-5 primary compromised")
    with sdk_client(gateway) as client:
        assert client.chat.completions.with_raw_response.create(model="gpt-test", messages=USER).headers["x-gateway-target"] == "backup/safe"
        with pytest.raises(openai.PermissionDeniedError) as caught:
            client.chat.completions.create(model="gpt-test", max_tokens=500, messages=USER)
    assert caught.value.response.json()["error"]["rule"] == "big-to-primary"
    assert upstream.received == []
