"""`gateway serve --workers 2`: two processes share one port, metrics and audit cover both, SIGTERM stops both."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import (
    GatewayProcess,
    free_port,
    get,
    local_gateway,
    metric_sum,
    parse_metrics,
    read_audit,
    sdk_client,
    wait_until,
    write_yaml,
)

REQUESTS = 40
CONFIG = """\
providers:
  mock: {kind: mock}
models:
  mock-gpt: {targets: [{provider: mock}]}
limits: {drain_timeout_s: 5}
store: {local_dir: store}
"""


def ready_instances(url: str, expected: int) -> set[str]:
    """Polls /readyz over fresh connections until `expected` distinct workers have answered."""
    seen: set[str] = set()

    def probe() -> bool:
        try:
            response = get(f"{url}/readyz", timeout=2)
        except OSError:
            return False
        if response.status == 200:
            seen.add(response.json()["instance"])
        return len(seen) >= expected

    wait_until(probe, timeout=30, interval=0.02, what=f"{expected} workers to answer /readyz")
    return seen


def scrape_total(url: str) -> float:
    return metric_sum(parse_metrics(get(f"{url}/metrics").body.decode()), "gateway_requests_total")


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[GatewayProcess, str]]:
    write_yaml(tmp_path / "gw.yaml", CONFIG)
    port = free_port()
    process = GatewayProcess(tmp_path, "--config", "gw.yaml", "--port", str(port), "--workers", "2")
    try:
        process.wait_ready(f"http://127.0.0.1:{port}", timeout=30)
        yield process, f"http://127.0.0.1:{port}"
    finally:
        process.kill()


def test_two_workers_share_the_port(two_workers: tuple[GatewayProcess, str], tmp_path: Path) -> None:
    process, url = two_workers
    workers = ready_instances(url, 2)
    assert len(workers) == 2

    port = int(url.rsplit(":", 1)[1])
    for index in range(REQUESTS):
        with sdk_client(local_gateway(port)) as client:  # a fresh connection each time, so the kernel spreads them
            reply = client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": f"n{index}"}], extra_headers={"x-request-id": f"w-{index}"})
        assert reply.choices[0].message.content == f"Mock reply: n{index}"

    def all_records() -> list[dict[str, object]] | None:
        records = read_audit(tmp_path / "store")
        return records if len(records) >= REQUESTS else None

    records = wait_until(all_records, timeout=10, what="all audit records")
    assert sorted(r["request_id"] for r in records) == sorted(f"w-{i}" for i in range(REQUESTS))
    assert {r["instance"] for r in records} == workers  # both workers served, each wrote its own records

    # Each worker publishes its samples at least once a second (and on the scrape it answers itself).
    wait_until(lambda: scrape_total(url) == REQUESTS or None, timeout=5, what="both workers' samples in a scrape")
    for _ in range(4):  # whichever worker answers the scrape, it reports the whole instance
        samples = parse_metrics(get(f"{url}/metrics").body.decode())
        assert metric_sum(samples, "gateway_requests_total") == REQUESTS
        assert metric_sum(samples, "gateway_requests_total", endpoint="chat/completions", model="mock-gpt", status="200", decision="allow") == REQUESTS
        assert metric_sum(samples, "gateway_request_duration_seconds_count") == REQUESTS
        assert metric_sum(samples, "gateway_in_flight_requests") == 0

    process.terminate()
    assert process.wait(timeout=20) == 0
    assert "Traceback" not in process.stderr


def test_a_dead_worker_is_replaced(two_workers: tuple[GatewayProcess, str], tmp_path: Path) -> None:
    process, url = two_workers
    workers = ready_instances(url, 2)
    port = int(url.rsplit(":", 1)[1])
    with sdk_client(local_gateway(port)) as client:
        for _ in range(6):
            client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "before"}])

    wait_until(lambda: scrape_total(url) == 6 or None, timeout=5, what="the samples published")
    victim = int(sorted(workers)[0].split(":")[1])  # instance ids are host:pid:nonce
    os.kill(victim, signal.SIGKILL)

    replacement = wait_until(lambda: ready_instances(url, 2) - workers or None, timeout=30, what="a replacement worker")
    assert len(replacement) == 1
    with sdk_client(local_gateway(port)) as client:
        reply = client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "after"}])
    assert reply.choices[0].message.content == "Mock reply: after"
    wait_until(lambda: scrape_total(url) == 7 or None, timeout=5, what="the dead worker's published counts kept")

    process.terminate()
    assert process.wait(timeout=20) == 0
