"""One contract, two backends: what the local file and the Redis stream both guarantee to the audit trail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.backends import AuditBackend, LocalFileBackend
from gateway.audit.chain import verify
from gateway.audit.reader import AuditReader, LocalFileReader, unique
from gateway.audit.redis_stream import RedisStreamBackend, RedisStreamReader
from gateway.audit.writer import AuditWriter, open_spool
from gateway.testing.redis_server import RedisServer


@dataclass
class Store:
    name: str
    backend: AuditBackend
    reader: AuditReader
    spool_dir: Path | None


@pytest.fixture(params=["local", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "local":
        yield Store("local", LocalFileBackend(tmp_path / "store"), LocalFileReader(tmp_path / "store"), None)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    key = request.getfixturevalue("redis_prefix") + "audit"
    reader = RedisStreamReader(server.url, key)
    yield Store("redis", RedisStreamBackend(server.url, key, maxlen=1_000_000), reader, tmp_path / "spool")
    await reader.close()


def writer_for(store: Store, queue_size: int = 10_000) -> AuditWriter:
    spool_dir = store.spool_dir
    spool = (lambda: open_spool(spool_dir, 64 * 1024 * 1024)) if spool_dir is not None else None
    return AuditWriter(store.backend, queue_size=queue_size, spool=spool)


BASE_TS = time.time() - 100


def record(n: int, *, request_id: str | None = None) -> dict[str, Any]:
    return {
        "v": 1, "id": f"rec-{n}", "ts": BASE_TS + n, "kind": "exchange", "request_id": request_id or f"req-{n}",
        "instance": "test-host:1:abc", "outcome": "ok", "n": n,
    }


async def collect(reader: AuditReader, **kwargs: Any) -> list[dict[str, Any]]:
    return [item async for item in reader.read(**kwargs)]


async def test_records_come_back_in_order_and_chained(store: Store) -> None:
    writer = writer_for(store)
    await writer.start()
    for n in range(300):
        writer.submit(record(n))
    await writer.close()
    records = await collect(store.reader)
    assert [r["n"] for r in records] == list(range(300))
    report = verify(records)
    assert report.ok and report.records == 300 and report.instances == 1


async def test_time_ranges_and_lookup_by_request_id(store: Store) -> None:
    writer = writer_for(store)
    await writer.start()
    for n in range(20):
        writer.submit(record(n, request_id="shared" if n in (3, 7) else None))
    await writer.close()
    window = await collect(store.reader, since=BASE_TS + 5, until=BASE_TS + 10)
    assert [r["n"] for r in window] == [5, 6, 7, 8, 9]
    assert [r["n"] for r in await store.reader.find("shared")] == [3, 7]
    assert await store.reader.find("nobody") == []


async def test_follow_sees_records_as_they_arrive(store: Store) -> None:
    writer = writer_for(store)
    await writer.start()
    writer.submit(record(0))
    await asyncio.sleep(0.2)
    seen: list[int] = []

    async def follow() -> None:
        async for item in store.reader.follow(since=0):
            seen.append(item["n"])
            if len(seen) == 3:
                return

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.3)
    writer.submit(record(1))
    writer.submit(record(2))
    await asyncio.wait_for(follower, 10)
    await writer.close()
    assert seen == [0, 1, 2]


async def test_unique_collapses_replayed_duplicates() -> None:
    records = [record(1), record(2), record(1)]
    assert [r["n"] for r in unique(records)] == [1, 2]
