"""Redis goes away and comes back: records are spooled durably, replayed in order, never lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway.audit.backends import RECORD_FIELD
from gateway.audit.redis_stream import RedisStreamBackend
from gateway.audit.chain import verify
from gateway.audit.writer import AuditWriter, open_spool
from gateway.metrics import Metrics
from gateway.testing.redis_server import RedisServer

KEY = "gw:audit"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A server of this test's own (these tests kill it), keeping what it acknowledged across a kill."""
    server = RedisServer(persistent=True)
    yield server
    server.close()


def record(n: int) -> dict[str, Any]:
    return {"v": 1, "id": f"rec-{n}", "ts": time.time(), "kind": "exchange", "request_id": f"req-{n}", "instance": "h:1:x", "n": n}


def stream(server: RedisServer) -> list[dict[str, Any]]:
    import orjson

    client = redis.Redis.from_url(server.url)
    try:
        return [orjson.loads(fields[RECORD_FIELD]) for _, fields in client.xrange(KEY)]
    finally:
        client.close()


async def wait_for(probe: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


def writer(server: RedisServer, spool_dir: Path, *, queue_size: int = 10_000, spool_bytes: int = 64 * 1024 * 1024) -> AuditWriter:
    backend = RedisStreamBackend(server.url, KEY, maxlen=1_000_000, timeout_s=0.5)
    return AuditWriter(backend, queue_size=queue_size, metrics=Metrics(), spool=lambda: open_spool(spool_dir, spool_bytes))


async def test_records_written_while_redis_is_down_are_replayed_in_order(own_redis: RedisServer, tmp_path: Path) -> None:
    audit = writer(own_redis, tmp_path / "spool")  # Redis not started yet
    await audit.start()
    for n in range(100):
        audit.submit(record(n))
    await wait_for(lambda: audit.spooled == 100)
    assert not audit.backend_available
    own_redis.start()
    await wait_for(lambda: len(stream(own_redis)) == 100)
    audit.submit(record(100))
    await audit.close()
    records = stream(own_redis)
    assert [r["n"] for r in records] == list(range(101))
    assert verify(records).ok
    assert (audit.spooled, audit.replayed, audit.written) == (100, 100, 1)


async def test_a_redis_killed_mid_run_loses_nothing(own_redis: RedisServer, tmp_path: Path) -> None:
    own_redis.start()
    audit = writer(own_redis, tmp_path / "spool")
    await audit.start()
    for n in range(300):
        audit.submit(record(n))
        await asyncio.sleep(0.002)
        if n == 100:
            own_redis.stop()
        if n == 200:
            own_redis.start()
    await audit.close()
    records = stream(own_redis)
    report = verify(records)
    assert report.ok, report.first_break
    assert sorted({r["n"] for r in records}) == list(range(300))
    assert report.records == 300  # duplicates (a batch that reached Redis as it died) collapse
    assert audit.spooled > 0


async def test_a_full_spool_stops_accepting_but_keeps_every_record(own_redis: RedisServer, tmp_path: Path) -> None:
    audit = writer(own_redis, tmp_path / "spool", queue_size=50, spool_bytes=4096)
    await audit.start()
    for n in range(200):
        audit.submit(record(n))
        await asyncio.sleep(0.001)
    await wait_for(lambda: not audit.accepting())  # spool full, memory backlog past queue_size
    own_redis.start()
    await wait_for(lambda: audit.accepting())
    await audit.close()
    assert sorted(r["n"] for r in stream(own_redis)) == list(range(200))


async def test_a_spool_left_by_a_dead_worker_is_replayed_by_the_next(own_redis: RedisServer, tmp_path: Path) -> None:
    first = writer(own_redis, tmp_path / "spool")
    await first.start()
    for n in range(30):
        first.submit(record(n))
    await wait_for(lambda: first.spooled == 30)
    await first.close()  # Redis still down: the records stay in the spool
    own_redis.start()
    second = writer(own_redis, tmp_path / "spool")
    await second.start()
    await wait_for(lambda: len(stream(own_redis)) == 30)
    await second.close()
    assert [r["n"] for r in stream(own_redis)] == list(range(30))
