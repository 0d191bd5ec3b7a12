"""The `gateway` command as users run it (`python -m gateway`, in a child process).

Failures exit 1 with one line on stderr and no traceback; usage errors exit 2.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gateway import __version__
from gateway.cli import main
from support import GatewayProcess, free_port, local_gateway, run_gateway, sdk_client, write_yaml

MOCK_ONLY = """\
providers:
  mock: {kind: mock}
models:
  mock-gpt: {targets: [{provider: mock}]}
store: {local_dir: store}
"""


def assert_one_line_failure(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("gateway: ")
    return lines[0]


def test_version(tmp_path: Path) -> None:
    result = run_gateway("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"gateway {__version__}"


def test_unknown_subcommand_exits_2(tmp_path: Path) -> None:
    result = run_gateway("frobnicate", cwd=tmp_path)
    assert result.returncode == 2
    assert "usage: gateway" in result.stderr
    assert "invalid choice: 'frobnicate'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [[], ["serve", "--workers", "0"], ["serve", "--port", "eighty"], ["serve", "--bogus-flag"], ["serve", "--log-level", "LOUD"]])
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    # In-process (the same `main` the console script runs), to keep the suite fast.
    with pytest.raises(SystemExit) as caught:
        main(args)
    assert caught.value.code == 2
    assert "usage: gateway" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("files", "args", "expected"),
    [
        ({"gateway.yaml": MOCK_ONLY + "workers: many\n"}, [], "gateway: gateway.yaml:6: workers: must be a number (got 'many')"),
        ({"gateway.yaml": MOCK_ONLY, "other.yaml": "providers: {}\n"}, ["--config", "other.yaml"], "gateway: other.yaml:1: models: at least one model route is required"),
        ({}, ["--config", "nope/gateway.yaml"], "gateway: nope/gateway.yaml: config file not found"),
        ({"g.yaml": MOCK_ONLY + "store: {backend: redis}\n"}, ["--config", "g.yaml"], "gateway: g.yaml:6: duplicate key 'store'"),
    ],
)
def test_config_failures_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], files: dict[str, str], args: list[str], expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    for name, text in files.items():
        write_yaml(tmp_path / name, text)
    assert main(["serve", *args]) == 1
    assert assert_one_line_failure(capsys.readouterr().err) == expected


def test_serve_with_a_bad_config_exits_1_with_one_line(tmp_path: Path) -> None:
    write_yaml(tmp_path / "bad.yaml", MOCK_ONLY + "listne: {port: 1}\n")
    result = run_gateway("serve", "--config", "bad.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert assert_one_line_failure(result.stderr) == "gateway: bad.yaml:6: listne: unknown key"


def test_serve_with_invalid_yaml(tmp_path: Path) -> None:
    write_yaml(tmp_path / "gateway.yaml", "providers: {mock: [\n")
    result = run_gateway("serve", cwd=tmp_path)
    assert result.returncode == 1
    assert assert_one_line_failure(result.stderr).startswith("gateway: gateway.yaml:2: ")


def test_serve_with_a_missing_config_file(tmp_path: Path) -> None:
    result = run_gateway("serve", "--config", "missing.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert assert_one_line_failure(result.stderr) == "gateway: missing.yaml: config file not found"


def test_serve_reads_gateway_config_env(tmp_path: Path) -> None:
    write_yaml(tmp_path / "env.yaml", MOCK_ONLY + "auth: {mode: jwt}\n")
    result = run_gateway("serve", cwd=tmp_path, GATEWAY_CONFIG="env.yaml")
    assert result.returncode == 1
    line = assert_one_line_failure(result.stderr)
    assert line.startswith("gateway: env.yaml:6: auth.mode: jwt needs auth.jwt")


def test_serve_with_unset_env_variable(tmp_path: Path) -> None:
    write_yaml(tmp_path / "gateway.yaml", "providers:\n  up: {kind: openai, base_url: 'http://127.0.0.1:1/v1', api_key: '${GW_TEST_UNSET_KEY}'}\nmodels:\n  m: {targets: [{provider: up}]}\n")
    result = run_gateway("serve", cwd=tmp_path)
    assert result.returncode == 1
    assert assert_one_line_failure(result.stderr) == "gateway: gateway.yaml:2: providers.up.api_key: environment variable GW_TEST_UNSET_KEY is not set"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_a_taken_port_exits_1(tmp_path: Path, workers: str) -> None:
    write_yaml(tmp_path / "gateway.yaml", MOCK_ONLY)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_gateway("serve", "--port", str(port), "--workers", workers, cwd=tmp_path)
    assert result.returncode == 1
    line = assert_one_line_failure(result.stderr)
    assert line.startswith(f"gateway: cannot listen on 127.0.0.1:{port}: ")
    assert "in use" in line


def test_serve_refuses_a_port_taken_by_another_gateway(tmp_path: Path) -> None:
    # Workers bind with SO_REUSEPORT; a second gateway must still not share the port silently.
    write_yaml(tmp_path / "gateway.yaml", MOCK_ONLY)
    port = free_port()
    first = GatewayProcess(tmp_path, "--port", str(port))
    try:
        first.wait_ready(f"http://127.0.0.1:{port}")
        second = run_gateway("serve", "--port", str(port), "--workers", "2", cwd=tmp_path)
        assert second.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}" in assert_one_line_failure(second.stderr)
    finally:
        first.kill()


def test_serve_embedded_default_without_a_config_file(tmp_path: Path) -> None:
    """The quickstart: no config at all, the built-in mock provider, audit in ./var."""
    port = free_port()
    process = GatewayProcess(tmp_path, "--port", str(port))
    try:
        process.wait_ready(f"http://127.0.0.1:{port}")
        with sdk_client(local_gateway(port)) as client:
            assert sorted(m.id for m in client.models.list()) == ["mock-embedding", "mock-gpt"]
            reply = client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "hello"}])
        assert reply.choices[0].message.content == "Mock reply: hello"
        process.terminate()
        assert process.wait() == 0
        assert (tmp_path / "var" / "audit.jsonl").exists()
        assert "embedded default" in process.stderr
        assert "Traceback" not in process.stderr
    finally:
        process.kill()
