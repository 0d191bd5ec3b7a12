"""`gateway incident ...` against a real gateway on a real port: the CLI is a client of the admin API, so
the server checks, applies and audits every change; failures are one line and exit 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.auth.api_keys import key_digest
from gateway.cli import main
from gateway.testing.upstream import FakeUpstream
from support import (
    GatewayProcess, cli_run, fake_provider, free_port, get, local_gateway, metric_sum, one_line, parse_metrics, read_audit, run_gateway, sdk_client,
    wait_until, write_yaml,
)

USER = [{"role": "user", "content": "hi"}]
LOCAL_ADMIN = "local@127.0.0.1"  # who an admin is with auth.mode none: the loopback caller (gateway.http.roles.actor)
OPS = "ops"  # the admin API key's app
ADMIN_KEY, APP_KEY = "gwk_cli-admin-key-0001", "gwk_cli-plain-key-0002"


@pytest.fixture(autouse=True)
def no_outside_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's own GATEWAY_URL, GATEWAY_TOKEN or GATEWAY_CONFIG must not steer these tests."""
    for name in ("GATEWAY_URL", "GATEWAY_TOKEN", "GATEWAY_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def with_backup(upstream: FakeUpstream, backup: FakeUpstream, **extra: Any) -> dict[str, Any]:
    return {
        "providers": {"fake": fake_provider(upstream.base_url), "backup": fake_provider(backup.base_url), "mock": {"kind": "mock"}},
        "models": {"gpt-test": {"targets": [{"provider": "fake"}]}, "safe-model": {"targets": [{"provider": "backup", "model": "safe"}]}},
        **extra,
    }


def gateway_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return cli_run(capsys, "incident", *args)


def test_block_fallback_clear_and_status_through_the_admin_api(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream, store_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gateway = make_gateway(**with_backup(upstream, backup))
    url = ["--url", gateway.url]
    assert gateway_cli(capsys, "status", *url)[:2] == (0, "no incident switch is on: traffic flows as configured\n")

    code, out, _ = gateway_cli(capsys, "block", "--reason", "INC-11 leaked key", *url)
    assert code == 0 and out.startswith("global") and "block" in out and f"by {LOCAL_ADMIN}: INC-11 leaked key" in out
    with sdk_client(gateway) as client, pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-test", messages=USER)
    assert caught.value.response.json()["error"]["code"] == "incident_block"

    code, out, _ = gateway_cli(capsys, "fallback", "safe-model", "--app", "anonymous", "--reason", "INC-11 anonymous on safe", *url)
    assert code == 0 and "app anonymous" in out and "fallback -> safe-model" in out
    with sdk_client(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=USER)
    assert raw.headers["x-gateway-decision"] == "fallback" and raw.headers["x-gateway-target"] == "backup/safe"

    code, out, _ = gateway_cli(capsys, "status", "--json", *url)
    assert code == 0 and '"model": "safe-model"' in out and '"action": "block"' in out
    assert gateway_cli(capsys, "clear", "--app", "anonymous", *url)[0] == 0
    code, out, _ = gateway_cli(capsys, "clear", "--reason", "INC-11 resolved", *url)
    assert (code, out) == (0, "no incident switch is on: traffic flows as configured\n")
    def events() -> list[str]:
        return [r["event"]["action"] for r in read_audit(store_dir) if r["kind"] == "admin_action"]

    wait_until(lambda: len(events()) == 4, what="four admin_action records")
    assert events() == ["incident_block", "incident_fallback", "incident_clear", "incident_clear"]


def test_the_server_refusals_are_one_line_and_exit_1(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [{"sha256": key_digest(ADMIN_KEY), "app": "ops", "roles": ["admin"]}, {"sha256": key_digest(APP_KEY), "app": "billing"}]
    gateway = make_gateway(**with_backup(upstream, backup, auth={"mode": "api_key", "api_keys": keys}))
    url = ["--url", gateway.url]

    code, _, err = gateway_cli(capsys, "block", "--reason", "x", *url)
    assert code == 1 and one_line(err).startswith("gateway: POST /admin/incidents/global: 401 ")
    code, _, err = gateway_cli(capsys, "block", "--reason", "x", "--token", APP_KEY, *url)
    assert code == 1 and one_line(err) == "gateway: POST /admin/incidents/global: 403 admin_required: This endpoint needs the admin role."
    code, _, err = gateway_cli(capsys, "fallback", "gpt-9", "--reason", "x", "--token", ADMIN_KEY, *url)
    assert code == 1 and one_line(err).startswith("gateway: POST /admin/incidents/global: 400 model_not_found: The model 'gpt-9' is not served")

    monkeypatch.setenv("GATEWAY_TOKEN", ADMIN_KEY)  # the token from the environment, the caller's identity in the audit trail
    code, out, _ = gateway_cli(capsys, "block", "--app", "billing", "--reason", "INC-12", *url)
    assert code == 0 and "app billing" in out and f"by {OPS}: INC-12" in out
    assert get(f"{gateway.url}/readyz").json()["incidents"]["apps"]["billing"]["actor"] == OPS


def test_an_unreachable_gateway_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens there
    code, _, err = gateway_cli(capsys, "status", "--url", f"http://127.0.0.1:{port}")
    assert code == 1
    assert one_line(err) == f"gateway: cannot reach the gateway at http://127.0.0.1:{port}: connection refused (is it running? set --url or $GATEWAY_URL)"
    code, _, err = gateway_cli(capsys, "status", "--url", "gateway:8080")
    assert code == 1 and one_line(err) == "gateway: 'gateway:8080' is not an http:// or https:// URL"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["block"], ["fallback", "--reason", "x"], ["pause"]):
        with pytest.raises(SystemExit) as caught:
            main(["incident", *args])
        assert caught.value.code == 2
    assert "usage: gateway incident" in capsys.readouterr().err


def test_the_url_comes_from_the_config_wildcards_read_as_loopback(make_gateway: Any, upstream: FakeUpstream, backup: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    gateway = make_gateway(**with_backup(upstream, backup))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    write_yaml(work / "gateway.yaml", f"listen: {{host: 0.0.0.0, port: {gateway.port}}}\nproviders: {{mock: {{kind: mock}}}}\nmodels: {{m: {{targets: [{{provider: mock}}]}}}}\n")
    assert gateway_cli(capsys, "block", "--reason", "from ./gateway.yaml")[0] == 0
    assert get(f"{gateway.url}/admin/incidents").json()["global"]["reason"] == "from ./gateway.yaml"
    write_yaml(work / "other.yaml", f"listen: {{host: '::', port: {free_port()}}}\nproviders: {{mock: {{kind: mock}}}}\nmodels: {{m: {{targets: [{{provider: mock}}]}}}}\n")
    code, _, err = gateway_cli(capsys, "status", "--config", "other.yaml")
    assert code == 1 and "cannot reach the gateway at http://[::1]:" in one_line(err)
    monkeypatch.setenv("GATEWAY_URL", gateway.url)  # the environment beats the config
    assert gateway_cli(capsys, "clear", "--config", "other.yaml")[0] == 0
    code, _, err = gateway_cli(capsys, "status", "--config", "missing.yaml", "--url", "")
    assert code == 0  # an empty --url falls back to $GATEWAY_URL


def test_the_command_against_gateway_serve(tmp_path: Path) -> None:
    """What an operator runs: `gateway serve` from a config, `gateway incident ...` next to it, both processes."""
    port = free_port()
    write_yaml(tmp_path / "gateway.yaml", f"listen: {{host: 0.0.0.0, port: {port}}}\nproviders: {{mock: {{kind: mock}}}}\n"
               "models: {mock-gpt: {targets: [{provider: mock}]}, mock-small: {targets: [{provider: mock}]}}\nstore: {local_dir: store}\n")
    quiet = {"GATEWAY_URL": "", "GATEWAY_TOKEN": ""}
    with GatewayProcess(tmp_path) as process:
        process.wait_ready(f"http://127.0.0.1:{port}")
        result = run_gateway("incident", "fallback", "mock-small", "--reason", "INC-13 drill", cwd=tmp_path, **quiet)
        assert result.returncode == 0, result.stderr
        assert "fallback -> mock-small" in result.stdout
        with sdk_client(local_gateway(port)) as client:
            raw = client.chat.completions.with_raw_response.create(model="mock-gpt", messages=USER)
        assert raw.headers["x-gateway-decision"] == "fallback"
        request_id = raw.headers["x-request-id"]
        shown = wait_until(lambda: (r := run_gateway("audit", "show", request_id, cwd=tmp_path, **quiet)).returncode == 0 and r, what="the exchange in the audit trail")
        assert f"request: incident/global -> fallback (enforce) mock-gpt -> mock-small; INC-13 drill (by {LOCAL_ADMIN})" in shown.stdout
        tail = run_gateway("audit", "tail", "--filter", "kind=admin_action", cwd=tmp_path, **quiet)
        assert f"action=incident_fallback scope=global model=mock-small reason=INC-13 drill actor={LOCAL_ADMIN}" in tail.stdout
        cleared = run_gateway("incident", "clear", cwd=tmp_path, **quiet)
        assert cleared.returncode == 0 and "no incident switch is on" in cleared.stdout
    stopped = run_gateway("incident", "status", cwd=tmp_path, **quiet)
    assert stopped.returncode == 1 and stopped.stderr.strip() == (
        f"gateway: cannot reach the gateway at http://127.0.0.1:{port}: connection refused (is it running? set --url or $GATEWAY_URL)"
    )


def test_every_worker_of_gateway_serve_follows_a_switch(tmp_path: Path) -> None:
    """`--workers 2` on the local store: the worker the call reaches writes the file, the other follows."""
    port = free_port()
    write_yaml(tmp_path / "gateway.yaml", f"listen: {{port: {port}}}\nproviders: {{mock: {{kind: mock}}}}\n"
               "models: {mock-gpt: {targets: [{provider: mock}]}}\nstore: {local_dir: store}\nlimits: {drain_timeout_s: 5}\n")
    quiet = {"GATEWAY_URL": "", "GATEWAY_TOKEN": ""}
    url = f"http://127.0.0.1:{port}"

    def workers_reporting(on: bool) -> bool:
        seen: dict[str, bool] = {}
        for _ in range(40):  # fresh connections: SO_REUSEPORT spreads them over both workers
            body = get(f"{url}/readyz", timeout=2).json()
            seen[body["instance"]] = body["incidents"]["global"] is not None
        return len(seen) == 2 and all(state == on for state in seen.values())

    with GatewayProcess(tmp_path, "--workers", "2") as process:
        process.wait_ready(url, timeout=30)
        assert run_gateway("incident", "block", "--reason", "INC-14", cwd=tmp_path, **quiet).returncode == 0
        wait_until(lambda: workers_reporting(True), timeout=5, interval=0.1, what="both workers to apply the switch")
        with sdk_client(local_gateway(port)) as client, pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="mock-gpt", messages=USER)
        gauge = metric_sum(parse_metrics(get(f"{url}/metrics").body.decode()), "gateway_incident_switch", scope="global", action="block")
        assert gauge == 1  # merged across the workers
        assert run_gateway("incident", "clear", cwd=tmp_path, **quiet).returncode == 0
        wait_until(lambda: workers_reporting(False), timeout=5, interval=0.1, what="both workers to clear the switch")
        wait_until(lambda: metric_sum(parse_metrics(get(f"{url}/metrics").body.decode()), "gateway_incident_switch") == 0, timeout=5, what="the gauge to fall")
