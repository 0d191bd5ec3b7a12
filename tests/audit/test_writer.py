"""The local audit writer: background appends, nothing lost or doubled, whenever it is closed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gateway.audit.backends import LocalFileBackend
from gateway.audit.writer import AUDIT_FILE, AuditWriter


def lines(directory: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (directory / AUDIT_FILE).read_text().splitlines()]


async def test_records_are_appended_in_order(tmp_path: Path) -> None:
    writer = AuditWriter(LocalFileBackend(tmp_path), queue_size=100)
    await writer.start()
    for index in range(50):
        writer.submit({"n": index})
    for _ in range(500):
        if writer.written == 50:
            break
        await asyncio.sleep(0.01)
    await writer.close()
    assert [r["n"] for r in lines(tmp_path)] == list(range(50))
    assert writer.written == 50


async def test_close_flushes_what_is_pending(tmp_path: Path) -> None:
    writer = AuditWriter(LocalFileBackend(tmp_path), queue_size=100)
    await writer.start()
    for index in range(10):
        writer.submit({"n": index})
    await writer.close()  # immediately: the writer has not had a turn yet
    assert [r["n"] for r in lines(tmp_path)] == list(range(10))


async def test_close_during_a_write_does_not_write_twice(tmp_path: Path) -> None:
    # Shutdown often comes right after the last exchange, while its record is being appended in the writer's
    # thread. Where exactly close() lands depends on that thread, so try it at several points, several times.
    for attempt in range(24):
        directory = tmp_path / str(attempt)
        writer = AuditWriter(LocalFileBackend(directory), queue_size=100)
        await writer.start()
        writer.submit({"n": attempt})
        for _ in range(attempt % 6):
            await asyncio.sleep(0)  # the writer task wakes and starts appending
        await writer.close()
        assert [r["n"] for r in lines(directory)] == [attempt], f"attempt {attempt}"
        assert writer.written == 1


async def test_appends_to_an_existing_trail(tmp_path: Path) -> None:
    (tmp_path / AUDIT_FILE).write_text('{"n": 0}\n')
    writer = AuditWriter(LocalFileBackend(tmp_path), queue_size=100)
    await writer.start()
    writer.submit({"n": 1})
    await writer.close()
    assert [r["n"] for r in lines(tmp_path)] == [0, 1]


def test_backlog_bound(tmp_path: Path) -> None:
    writer = AuditWriter(LocalFileBackend(tmp_path), queue_size=3)  # never started: nothing drains the queue
    for index in range(2):
        writer.submit({"n": index})
    assert writer.accepting()
    writer.submit({"n": 2})
    assert not writer.accepting()  # over its bound: the pipeline applies audit.on_unavailable


async def test_records_are_stored_while_new_ones_keep_arriving(tmp_path: Path) -> None:
    # Under sustained load the queue never empties; the writer must store as it goes, not wait for a lull.
    writer = AuditWriter(LocalFileBackend(tmp_path), queue_size=100_000)
    await writer.start()
    stored_during_load = 0
    for burst in range(60):
        for index in range(200):
            writer.submit({"n": burst * 200 + index})
        await asyncio.sleep(0.005)
        stored_during_load = writer.written
    assert stored_during_load >= 6_000  # most of it was stored while records were still arriving
    await writer.close()
    assert [r["n"] for r in lines(tmp_path)] == list(range(12_000))
