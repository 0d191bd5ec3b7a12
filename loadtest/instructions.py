"""Instructions per request, gateway vs passthrough, counted by callgrind: the deterministic benchmark.

Wall-clock CPU per request varies by up to +-15% between runs on a shared VM; instruction counts do not
(two runs of the same code agree within 0.1%), so this is the figure to compare two versions of the
gateway with. Each proxy runs under `valgrind --tool=callgrind`; after a warm-up the counters are zeroed,
exactly N requests are sent (4 keep-alive connections), and the counters are dumped. All threads count
(the audit writer's too). Under valgrind the proxies serve only ~100 requests a second, so costs paid
per batch or per second (audit writes, metric flushes) weigh more here than at full load.

    python loadtest/instructions.py [--requests 1000] [--stream]     # ~2 minutes; needs valgrind
    python loadtest/instructions.py --keep results/callgrind          # keep the dumps for callgrind_annotate

Servers bind 127.0.0.1; every child is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import CHAT_BODY, STREAM_BODY, free_port, gateway_config  # noqa: E402

HOST = "127.0.0.1"
LOADTEST = Path(__file__).resolve().parent
WARMUP_REQUESTS = 300
CONNECTIONS = 4


async def wait_ready(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"http://{HOST}:{port}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    raise RuntimeError(f"nothing answered on port {port} within {timeout:g}s")


async def send(port: int, count: int, body: dict[str, object], model: str) -> None:
    payload = json.dumps({**body, "model": model}).encode()
    url = f"http://{HOST}:{port}/v1/chat/completions"
    remaining = count
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                async with session.post(url, data=payload, headers={"content-type": "application/json"}) as response:
                    data = await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(CONNECTIONS))), timeout=600)


def callgrind_total(path: Path) -> int:
    match = re.search(r"^(?:summary|totals):\s+(\d+)", path.read_text(errors="replace"), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no totals in {path}")
    return int(match.group(1))


async def count(name: str, command: list[str], port: int, requests: int, body: dict[str, object], model: str, workdir: Path) -> int:
    out = workdir / f"callgrind.{name}"
    process = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p", *command],
        stdout=subprocess.DEVNULL, stderr=(workdir / f"{name}.log").open("wb"), cwd=workdir,
    )
    try:
        await wait_ready(port)
        await send(port, WARMUP_REQUESTS, body, model)
        subprocess.run(["callgrind_control", "--zero", str(process.pid)], check=True, capture_output=True, timeout=60)
        await send(port, requests, body, model)
        subprocess.run(["callgrind_control", "--dump", str(process.pid)], check=True, capture_output=True, timeout=60)
        dumps = sorted(workdir.glob(f"callgrind.{name}.{process.pid}.*"))
        if not dumps:
            raise RuntimeError(f"callgrind wrote no dump for {name}")
        return callgrind_total(dumps[-1]) // requests
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, int]:
    python = sys.executable
    upstream_port, passthrough_port, gateway_port = free_port(), free_port(), free_port()
    upstream = subprocess.Popen([python, str(LOADTEST / "upstream.py"), "--port", str(upstream_port)], stdout=subprocess.DEVNULL)
    try:
        await wait_ready(upstream_port, timeout=30)
        config = workdir / "gateway.json"
        gateway_config(config, gateway_port, upstream_port, workdir)
        body = STREAM_BODY if args.stream else CHAT_BODY
        passthrough = [python, str(LOADTEST / "passthrough.py"), "--port", str(passthrough_port), "--upstream", f"http://{HOST}:{upstream_port}"]
        gateway = [python, "-m", "gateway", "serve", "--config", str(config)]
        return {
            "passthrough": await count("passthrough", passthrough, passthrough_port, args.requests, body, "bench", workdir),
            "gateway": await count("gateway", gateway, gateway_port, args.requests, body, "bench", workdir),
        }
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="measured requests per proxy (default 1000)")
    parser.add_argument("--stream", action="store_true", help="streamed chat (include_usage) instead of plain chat")
    parser.add_argument("--keep", type=Path, help="keep the callgrind dumps in this directory (for callgrind_annotate)")
    args = parser.parse_args(argv)
    if not shutil.which("valgrind"):
        print("instructions.py needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="gateway-instructions-"))
    try:
        counts = asyncio.run(run(args, workdir))
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            for dump in workdir.glob("callgrind.*"):
                shutil.copy2(dump, args.keep / dump.name)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    kind = "streamed chat" if args.stream else "chat"
    print(f"instructions per request ({kind}, {args.requests} requests, callgrind):")
    for name, value in counts.items():
        print(f"  {name:12s} {value:>10,}")
    print(f"  ratio        {counts['gateway'] / counts['passthrough']:.3f}  (gateway / passthrough)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
