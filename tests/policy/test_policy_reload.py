"""Hot reload: file changes, SIGHUP and the admin endpoint swap the bundle; a bad bundle changes nothing."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai

from gateway.auth import NoAuth
from gateway.exchange import ANONYMOUS
from gateway.policy.signing import generate_keypair, sign_bundle, write_signature
from gateway.policy.bundle import read_bundle
from policy_support import policy_file, write_policies
from support import (
    GatewayProcess,
    free_port,
    get,
    local_gateway,
    metric_sum,
    parse_metrics,
    raw_request,
    read_audit,
    run_gateway,
    sdk_client,
    wait_until,
    write_yaml,
)

FLAG_APPLE = """
rules:
  - {id: apples, phase: request, check: {keywords: {words: [apple]}}, action: flag}
"""
BLOCK_APPLE = FLAG_APPLE.replace("action: flag", "action: block")


def decision_for(gateway: Any, content: str) -> str:
    with sdk_client(gateway) as client:
        try:
            raw = client.chat.completions.with_raw_response.create(model="mock-gpt", messages=[{"role": "user", "content": content}])
        except openai.PermissionDeniedError as error:
            return str(error.response.headers["x-gateway-decision"])
    return str(raw.headers["x-gateway-decision"])


def test_an_edited_file_goes_live_without_a_restart(make_gateway: Any, tmp_path: Path, store_dir: Path) -> None:
    policies = write_policies(tmp_path / "policies", fruit=FLAG_APPLE)
    gateway = make_gateway()
    first = get(f"{gateway.url}/readyz").json()["policy_version"]
    assert decision_for(gateway, "an apple") == "flag"
    (policies / "fruit.yaml").write_text(policy_file("fruit", BLOCK_APPLE))
    wait_until(lambda: decision_for(gateway, "an apple") == "block", timeout=10, what="the edited policy to go live")
    second = get(f"{gateway.url}/readyz").json()["policy_version"]
    assert second != first
    reloads = wait_until(lambda: [r for r in read_audit(store_dir) if r["kind"] == "policy_reload" and r["event"]["reason"] == "file change"], what="the reload's audit record")
    assert reloads[-1]["event"]["previous_version"] == first and reloads[-1]["policy_version"] == second
    assert reloads[-1]["event"]["files"] == {"fruit.yaml": reloads[-1]["event"]["files"]["fruit.yaml"]}


def test_a_broken_edit_keeps_the_last_good_version_live(make_gateway: Any, tmp_path: Path, store_dir: Path) -> None:
    policies = write_policies(tmp_path / "policies", fruit=BLOCK_APPLE)
    gateway = make_gateway()
    version = get(f"{gateway.url}/readyz").json()["policy_version"]
    (policies / "fruit.yaml").write_text(policy_file("fruit", BLOCK_APPLE.replace("action: block", "action: explode")))
    failed = wait_until(lambda: [r for r in read_audit(store_dir) if r["kind"] == "policy_reload" and r["outcome"] == "failed"], what="the failed reload's record")
    assert "fruit.yaml:" in failed[-1]["event"]["error"] and "action: must be one of" in failed[-1]["event"]["error"]
    assert get(f"{gateway.url}/readyz").json()["policy_version"] == version
    assert decision_for(gateway, "an apple") == "block"  # still enforced
    samples = parse_metrics(get(f"{gateway.url}/metrics").body.decode())
    assert metric_sum(samples, "gateway_policy_reloads_total", result="failed") >= 1
    assert metric_sum(samples, "gateway_policy_version_info", version=version) == 1


def test_the_admin_endpoint_reloads_and_describes_the_bundle(make_gateway: Any, tmp_path: Path) -> None:
    policies = write_policies(tmp_path / "policies", fruit=FLAG_APPLE)
    gateway = make_gateway(policies={"dir": str(policies), "reload": "off"})
    described = get(f"{gateway.url}/admin/policies").json()
    assert described["policies"][0]["rules"] == [{"id": "apples", "phase": ["request"], "check": "keywords", "action": "flag", "mode": "enforce", "stage": None}]
    (policies / "fruit.yaml").write_text(policy_file("fruit", BLOCK_APPLE))
    assert decision_for(gateway, "an apple") == "flag"  # reload: off, nothing watches
    answer = raw_request(f"{gateway.url}/admin/policies/reload", b"")
    assert answer.status == 200 and answer.json()["changed"] is True
    assert answer.json()["version"] != described["version"]
    assert decision_for(gateway, "an apple") == "block"
    (policies / "fruit.yaml").write_text("not: [valid")
    broken = raw_request(f"{gateway.url}/admin/policies/reload", b"")
    assert broken.status == 422 and broken.json()["ok"] is False and "fruit.yaml:" in broken.json()["error"]
    assert decision_for(gateway, "an apple") == "block"


def test_without_identities_admin_endpoints_answer_only_the_local_host() -> None:
    auth = NoAuth()
    assert auth.may(ANONYMOUS, "admin", "127.0.0.1") and auth.may(ANONYMOUS, "admin", "::1")
    assert not auth.may(ANONYMOUS, "admin", "10.1.2.3")
    assert not auth.may(ANONYMOUS, "admin", None)


CONFIG = """\
providers:
  mock: {kind: mock}
models:
  mock-gpt: {targets: [{provider: mock}]}
limits: {drain_timeout_s: 5}
store: {local_dir: store}
policies: {dir: policies, reload: off%s}
"""


def test_serve_refuses_a_broken_bundle_at_start(tmp_path: Path) -> None:
    write_yaml(tmp_path / "gw.yaml", CONFIG % "")
    write_policies(tmp_path / "policies", fruit=BLOCK_APPLE.replace("action: block", "action: explode"))
    result = run_gateway("serve", "--config", "gw.yaml", "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "fruit.yaml:" in result.stderr


@contextmanager
def two_workers_flagging_apples(tmp_path: Path) -> Iterator[tuple[GatewayProcess, Any, Path]]:
    """`gateway serve --workers 2` with `reload: off` on a bundle that flags apples; yields the process,
    what `sdk_client` needs to reach it, and the policy directory."""
    write_yaml(tmp_path / "gw.yaml", CONFIG % "")
    policies = write_policies(tmp_path / "policies", fruit=FLAG_APPLE)
    port = free_port()
    with GatewayProcess(tmp_path, "--config", "gw.yaml", "--port", str(port), "--workers", "2") as process:
        process.wait_ready(f"http://127.0.0.1:{port}", timeout=30)
        yield process, local_gateway(port), policies


def every_worker_blocks_apples(gateway: Any) -> bool:
    return all(decision_for(gateway, "apple") == "block" for _ in range(20))


def test_sighup_reloads_every_worker(tmp_path: Path) -> None:
    with two_workers_flagging_apples(tmp_path) as (process, gateway, policies):
        (policies / "fruit.yaml").write_text(policy_file("fruit", BLOCK_APPLE))
        process.process.send_signal(signal.SIGHUP)
        wait_until(lambda: every_worker_blocks_apples(gateway), timeout=15, what="both workers to reload")


def test_signed_bundles_are_required_when_configured(tmp_path: Path) -> None:
    key_id = generate_keypair(tmp_path / "secops.key", tmp_path / "secops.pub")
    write_yaml(tmp_path / "gw.yaml", CONFIG % ", require_signature: {keys: [secops.pub]}")
    policies = write_policies(tmp_path / "policies", fruit=BLOCK_APPLE)
    unsigned = run_gateway("serve", "--config", "gw.yaml", "--port", str(free_port()), cwd=tmp_path)
    assert unsigned.returncode == 1 and "not signed" in unsigned.stderr
    signed = run_gateway("policy", "sign", "--config", "gw.yaml", "--key", "secops.key", "--signer", "ann@secops", cwd=tmp_path)
    assert signed.returncode == 0, signed.stderr
    port = free_port()
    with GatewayProcess(tmp_path, "--config", "gw.yaml", "--port", str(port)) as process:
        process.wait_ready(f"http://127.0.0.1:{port}", timeout=30)
        gateway = local_gateway(port)
        version = get(f"{gateway.url}/readyz").json()["policy_version"]
        records = wait_until(lambda: [r for r in read_audit(tmp_path / "store") if r["kind"] == "policy_reload"], what="the start's record")
        assert records[0]["event"]["signed_by"] == key_id
        (policies / "fruit.yaml").write_text(policy_file("fruit", FLAG_APPLE))  # altered after signing
        refused = raw_request(f"{gateway.url}/admin/policies/reload", b"")
        assert refused.status == 422 and "signature does not match" in refused.json()["error"]
        assert get(f"{gateway.url}/readyz").json()["policy_version"] == version
        write_signature(read_bundle(policies), sign_bundle(read_bundle(policies), tmp_path / "secops.key"))
        accepted = raw_request(f"{gateway.url}/admin/policies/reload", b"")
        assert accepted.status == 200 and accepted.json()["signed_by"] == key_id


def test_an_admin_reload_reaches_every_worker(tmp_path: Path) -> None:
    with two_workers_flagging_apples(tmp_path) as (_, gateway, policies):
        (policies / "fruit.yaml").write_text(policy_file("fruit", BLOCK_APPLE))
        answer = raw_request(f"{gateway.url}/admin/policies/reload", b"")  # reaches one worker...
        assert answer.status == 200 and answer.json()["changed"] is True
        # ...which asks the supervisor to reload the others (reload: off, so nothing else would)
        wait_until(lambda: every_worker_blocks_apples(gateway), timeout=15, what="every worker on the new version")
