"""The locust scenario still runs: a short headless run against a real gateway must finish with no failures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway.testing.threads import GatewayServer
from support import REPO, free_port


def test_locust_scenario_runs_clean_against_the_gateway(gateway: GatewayServer, tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "locust", "-f", str(REPO / "loadtest" / "locustfile.py"), "--headless",
        "-u", "4", "-r", "4", "-t", "3s", "--host", gateway.url, "--only-summary", "--json",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    stats = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert {"chat", "chat stream", "embeddings"} <= set(stats)
    assert all(entry["num_failures"] == 0 for entry in stats.values())
    assert all(entry["num_requests"] > 0 for name, entry in stats.items() if name in ("chat", "chat stream"))


def test_soak_scenario_runs_clean_through_policies_and_failover(make_gateway: Any, tmp_path: Path) -> None:
    """The soak's paths (redaction restored, block, failover) as the soak drives them, for a few seconds."""
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    gateway = make_gateway(
        providers={"mock": {"kind": "mock"}, "down": {"kind": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1"}},
        models={"mock-gpt": {"targets": [{"provider": "mock"}]}, "mock-fallback": {"targets": [{"provider": "down", "model": "x"}, {"provider": "mock", "model": "mock-gpt"}]}},
        policies={"dir": str(policies)},
    )
    command = [
        sys.executable, "-m", "locust", "-f", str(REPO / "loadtest" / "soak_locustfile.py"), "--headless",
        "-u", "4", "-r", "4", "-t", "3s", "--host", gateway.url, "--only-summary", "--json",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    stats = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert {"chat", "chat stream", "chat redacted", "chat blocked", "chat fallback"} <= set(stats)
    assert all(entry["num_failures"] == 0 for entry in stats.values()), stats
