"""Audit writer throughput: how many records per second reach a local Redis stream (and the local file).

Starts its own redis-server (no persistence, as in the tests), builds realistic exchange records the way
the pipeline does (a chat exchange with two decisions, one attempt, usage and HMAC content digests), submits
them in bursts as a busy gateway would, and times until the writer has stored them all: sealing into the
hash chain, serialising, and pipelined XADD with approximate trimming included. Target: at least 20,000
records/s into Redis on this machine.

    python loadtest/audit_bench.py                 # 100,000 records per backend, 3 rounds
    python loadtest/audit_bench.py --records 20000 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.audit.backends import AuditBackend, LocalFileBackend  # noqa: E402
from gateway.audit.redis_stream import RedisStreamBackend  # noqa: E402
from gateway.audit.record import AuditRecord, RecordBuilder, instance_id  # noqa: E402
from gateway.audit.writer import AuditWriter, open_spool  # noqa: E402
from gateway.exchange import Attempt, Decision, Endpoint, Exchange, Usage  # noqa: E402
from gateway.ids import IdGenerator  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402
from gateway.testing.redis_server import RedisServer  # noqa: E402

BURST = 500  # records submitted between two yields to the event loop (a busy worker's few milliseconds)


def records(count: int) -> list[AuditRecord]:
    builder = RecordBuilder(instance_id(), "hmac", b"k" * 32, IdGenerator())
    made = []
    for n in range(count):
        exchange = Exchange(f"req-{n:08d}", Endpoint.CHAT, body={"model": "gpt-4o", "messages": [{"role": "user", "content": "hello " * 20}]}, model="gpt-4o")
        exchange.attempts.append(Attempt("openai/gpt-4o", 200, 812.5))
        exchange.decisions.extend([
            Decision("pii-protection", "mask-pii", "request", "redact", "enforce", "redact", "EMAIL x1", 14.2),
            Decision("secrets", "no-secrets-out", "response", "redact", "monitor", "would_redact", "GITHUB_TOKEN x1", 9.1),
        ])
        exchange.usage = Usage(120, 48)
        exchange.response_body = b'{"choices": [{"message": {"content": "hi"}}]}'
        exchange.http_status, exchange.outcome = 200, "ok"
        made.append(builder.exchange_record(exchange, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"))
    return made


async def measure(backend: AuditBackend, batch: list[AuditRecord], spool_dir: Path | None) -> float:
    spool = (lambda: open_spool(spool_dir, 1 << 30)) if spool_dir is not None else None
    writer = AuditWriter(backend, queue_size=len(batch) + 1, metrics=Metrics(), spool=spool)
    await writer.start()
    started = time.perf_counter()
    for index in range(0, len(batch), BURST):
        for record in batch[index:index + BURST]:
            writer.submit(record)
        await asyncio.sleep(0)
    while writer.written < len(batch):
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - started
    await writer.close()
    assert writer.spooled == 0, "the backend failed during the run; figures would be meaningless"
    return len(batch) / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    batch = records(args.records)
    print(f"{args.records} exchange records per round, {args.rounds} rounds; median records/s (range)")
    with RedisServer() as server, tempfile.TemporaryDirectory() as scratch:
        results: dict[str, list[float]] = {"redis stream": [], "local file": []}
        for round_number in range(args.rounds):
            key = f"bench{round_number}:audit"
            results["redis stream"].append(await measure(RedisStreamBackend(server.url, key, maxlen=10_000_000), batch, Path(scratch) / f"spool{round_number}"))
            results["local file"].append(await measure(LocalFileBackend(Path(scratch) / f"local{round_number}"), batch, None))
        for name, rates in results.items():
            print(f"  {name:<13} {statistics.median(rates):>9,.0f}   ({min(rates):,.0f}-{max(rates):,.0f})")
    print("target: >= 20,000 records/s into Redis")


if __name__ == "__main__":
    asyncio.run(main())
