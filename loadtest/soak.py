"""Soak test: a long mixed run (plain and streamed chat, redactions, blocks, fallbacks) through one gateway,
reporting throughput, latency percentiles and errors per task, and the gateway's memory over time.

Starts `gateway serve` (2 workers, the shipped policy packs, the built-in mock provider, and a route whose
first target refuses connections so every request on it fails over) and drives it with locust, headless,
from `soak_locustfile.py`. Memory (RSS of every gateway process) is sampled every 10 seconds; the verdict
compares the last minute with the first full minute after warm-up: memory must stay flat.

    python loadtest/soak.py --minutes 10 --users 20        # the documented run
    python loadtest/soak.py --minutes 1                     # a quick look
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SAMPLE_S = 10


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_mb(root: int) -> float:
    """RSS of a process and its children (the supervisor and its workers), from /proc."""
    pids = [root]
    try:
        children = subprocess.run(["pgrep", "-P", str(root)], capture_output=True, text=True).stdout.split()
        pids += [int(pid) for pid in children]
    except OSError:
        pass
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gateway-soak-"))
    shutil.copytree(REPO / "policies", work / "policies")
    port = free_port()
    (work / "gateway.yaml").write_text(
        "providers:\n  mock: {kind: mock}\n"
        f"  down: {{kind: openai, base_url: 'http://127.0.0.1:{free_port()}/v1', timeouts: {{connect_s: 1}}}}\n"
        "models:\n  mock-gpt: {targets: [{provider: mock}]}\n"
        "  mock-fallback: {targets: [{provider: down, model: nothing}, {provider: mock, model: mock-gpt}]}\n"
        "routing: {breaker: {failures: 1000000}}\n"  # keep the failing target in play: every request fails over
        f"store: {{local_dir: {work / 'store'}}}\npolicies: {{dir: {work / 'policies'}, reload: off}}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    gateway = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(work / "gateway.yaml"), "--port", str(port), "--workers", str(args.workers)],
        env=env, stdout=open(work / "gateway.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or gateway.poll() is not None:
                    raise SystemExit(f"gateway did not start: {(work / 'gateway.log').read_text()[-2000:]}") from None
                time.sleep(0.2)
        seconds = int(args.minutes * 60)
        locust = subprocess.Popen(
            ["locust", "-f", str(HERE / "soak_locustfile.py"), "--headless", "-u", str(args.users), "-r", str(args.users),
             "-t", f"{seconds}s", "--host", f"http://127.0.0.1:{port}", "--csv", str(work / "soak"), "--only-summary"],
            stdout=subprocess.DEVNULL, stderr=open(work / "locust.log", "wb"),
        )
        samples: list[tuple[int, float]] = []
        started = time.monotonic()
        while locust.poll() is None:
            time.sleep(SAMPLE_S)
            samples.append((int(time.monotonic() - started), rss_mb(gateway.pid)))
        report(work, samples, args)
    finally:
        try:
            os.killpg(gateway.pid, signal.SIGTERM)
            gateway.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(gateway.pid, signal.SIGKILL)
        print(f"(work directory: {work})")


def report(work: Path, samples: list[tuple[int, float]], args: argparse.Namespace) -> None:
    print(f"soak: {args.minutes:g} min, {args.users} users, gateway --workers {args.workers} (RSS summed over its processes)")
    print(f"{'task':<18} {'requests':>9} {'failures':>8} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}")
    with open(work / "soak_stats.csv") as handle:
        for row in csv.DictReader(handle):
            print(f"{row['Name']:<18} {row['Request Count']:>9} {row['Failure Count']:>8} {float(row['Requests/s']):>8.1f} "
                  f"{row['50%']:>7} {row['95%']:>7} {row['99%']:>7}")
    print("memory (MB) every minute: " + ", ".join(f"{second // 60}m {mb:.0f}" for second, mb in samples if second % 60 < SAMPLE_S))
    warm = [mb for second, mb in samples if 60 <= second < 120]
    last = [mb for second, mb in samples if second >= samples[-1][0] - 60] if samples else []
    if warm and last:
        growth = (sum(last) / len(last)) / (sum(warm) / len(warm)) - 1
        print(f"memory growth from minute 2 to the last minute: {growth * 100:+.1f}% ({'flat' if abs(growth) < 0.05 else 'NOT flat'})")


if __name__ == "__main__":
    main()
