"""Helpers shared by the test modules: audit trail reading, metrics parsing, raw HTTP, gateway processes.

Raw HTTP (urllib) is only for input the openai SDK cannot send; everything an application would do goes
through the SDK.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import openai
from prometheus_client.parser import text_string_to_metric_families

from gateway.audit.writer import AUDIT_FILE

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent

UPSTREAM_KEY = "sk-upstream-provider-key-0123456789"  # the provider key in test configs; must never leak
CLIENT_KEY = "sk-client-credential-should-not-leak"  # what the SDK sends as its own Authorization


def sdk_client(server: Any, **kwargs: Any) -> openai.OpenAI:
    """The official SDK pointed at a gateway (anything with `base_url`); retries off so failures are seen once."""
    options: dict[str, Any] = {"api_key": CLIENT_KEY, "max_retries": 0, "timeout": 20, **kwargs}
    return openai.OpenAI(base_url=server.base_url, **options)


def async_sdk_client(server: Any, **kwargs: Any) -> openai.AsyncOpenAI:
    options: dict[str, Any] = {"api_key": CLIENT_KEY, "max_retries": 0, "timeout": 20, **kwargs}
    return openai.AsyncOpenAI(base_url=server.base_url, **options)


def fake_provider(base_url: str, **timeouts: float) -> dict[str, Any]:
    """The `fake` provider's config section; `timeouts` override connect_s / first_byte_s / idle_s."""
    return {
        "kind": "openai",
        "base_url": base_url,
        "api_key": UPSTREAM_KEY,
        "headers": {"x-extra": "extra-value"},
        "timeouts": {"connect_s": 2, "first_byte_s": 5, "idle_s": 5, **timeouts},
    }


def upstream_headers(received: Any) -> dict[str, str]:
    """The headers a `FakeUpstream` request arrived with, keyed in lower case."""
    return {name.lower(): value for name, value in received.headers.items()}


# -- polling ------------------------------------------------------------------------------------------
def wait_until(probe: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> T:
    """Calls `probe` until it returns something truthy; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


# -- audit --------------------------------------------------------------------------------------------
def audit_path(store_dir: Path) -> Path:
    return Path(store_dir) / AUDIT_FILE


def read_audit(store_dir: Path) -> list[dict[str, Any]]:
    path = audit_path(store_dir)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def audit_records_for(store_dir: Path, request_id: str, *, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The records of one request, once the background writer has flushed at least one of them.

    Waits a little longer after the first shows up, so a duplicate written late would be seen too.
    """
    wait_until(lambda: [r for r in read_audit(store_dir) if r.get("request_id") == request_id], timeout=timeout, what=f"audit record of {request_id}")
    time.sleep(0.1)
    return [r for r in read_audit(store_dir) if r.get("request_id") == request_id]


def audit_record_for(store_dir: Path, request_id: str) -> dict[str, Any]:
    records = audit_records_for(store_dir, request_id)
    assert len(records) == 1, f"expected exactly one audit record for {request_id}, got {records}"
    return records[0]


# -- metrics ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse_metrics(text: str) -> list[Sample]:
    return [
        Sample(sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def metric_sum(samples: Iterable[Sample], name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def metric_names(samples: Iterable[Sample]) -> set[str]:
    return {s.name for s in samples}


# -- raw HTTP (only for what the SDK cannot send) --------------------------------------------------------
@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(url: str, data: bytes | None = None, *, method: str = "POST", headers: dict[str, str] | None = None, timeout: float = 10.0) -> RawResponse:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback only
            return RawResponse(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return RawResponse(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def get(url: str, *, timeout: float = 10.0) -> RawResponse:
    return raw_request(url, method="GET", timeout=timeout)


# -- the command line, in process -------------------------------------------------------------------------
def cli_run(capsys: Any, *args: str) -> tuple[int, str, str]:
    """`gateway ARGS...` through `gateway.cli.main`: exit code, stdout, stderr."""
    from gateway.cli import main  # noqa: PLC0415 - only the CLI tests need it

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    """A failure's stderr: exactly one `gateway: ...` line, no traceback."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gateway: "), err
    return lines[0]


# -- gateway processes ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def gateway_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "gateway", *args]


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test's environment, with the repository importable and no config leaking in from outside."""
    env = {k: v for k, v in os.environ.items() if k not in ("GATEWAY_CONFIG", "PROMETHEUS_MULTIPROC_DIR")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def run_gateway(*args: str, cwd: Path, timeout: float = 30.0, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(gateway_command(*args), cwd=cwd, env=subprocess_env(**env), capture_output=True, text=True, timeout=timeout)


class GatewayProcess:
    """`gateway serve` in a child process; always `stop()` it in a `finally` (or use it as a context manager)."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.cwd = cwd
        self.stdout_path = cwd / "gateway.stdout"
        self.stderr_path = cwd / "gateway.stderr"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            # Its own session, so `kill()` can reach the workers of a supervisor too (by process group id).
            self.process = subprocess.Popen(
                gateway_command("serve", *args), cwd=cwd, env=subprocess_env(), stdout=out, stderr=err, start_new_session=True
            )

    def __enter__(self) -> GatewayProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.kill()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, url: str, timeout: float = 20.0) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"gateway exited early with {self.process.returncode}: {self.stderr}")
            try:
                return get(f"{url}/healthz", timeout=1).status == 200
            except OSError:
                return False

        wait_until(ready, timeout=timeout, interval=0.05, what="gateway to answer /healthz")

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 20.0) -> int:
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """Stops the process if it is still running: SIGTERM, then SIGKILL to its whole process group."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # leftover workers, if any
        except ProcessLookupError:
            pass
        if self.process.poll() is None:
            self.process.wait(timeout=5)


def local_gateway(port: int) -> SimpleNamespace:
    """What `sdk_client` needs to reach a gateway process listening on 127.0.0.1:`port`."""
    return SimpleNamespace(url=f"http://127.0.0.1:{port}", base_url=f"http://127.0.0.1:{port}/v1")


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def connection_refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True
