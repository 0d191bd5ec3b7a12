"""The locust scenario still runs: a short headless run against a real gateway must finish with no failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gateway.testing.threads import GatewayServer
from support import REPO


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
