"""Reading the audit trail back: ranges by time, following new records, one exchange by request id.

The same interface over both backends, so `gateway audit …` and `GET /admin/audit/{request_id}` work the
same against a local file or a Redis stream. Readers hand out records as stored; replayed duplicates (same
`id`) are collapsed by `unique()` for display, while `gateway audit verify` sees everything.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import orjson

from gateway.audit.backends import AUDIT_FILE
from gateway.config.model import GatewayConfig

Record = dict[str, Any]
CHUNK = 1000
RELATED_WITHIN_S = 24 * 3600  # a review may decide hours after the exchange was parked


CLOCK_SKEW_S = 60.0  # instances' clocks and Redis's may disagree by this much


def start_id(since: float | None) -> str:
    return "-" if since is None else f"{max(int((since - CLOCK_SKEW_S) * 1000), 0)}-0"


def entry_ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])
FOLLOW_POLL_S = 0.5


def reader_for(config: GatewayConfig) -> AuditReader:
    """The reader of the store a config names (what the server writes, the CLI and admin API read)."""
    if config.store.backend == "redis":
        from gateway.audit.redis_stream import RedisStreamReader  # noqa: PLC0415 - redis loads only when used

        return RedisStreamReader(config.store.redis_url, config.store.key_prefix + config.audit.stream)
    return LocalFileReader(config.store.local_dir)


class AuditReader(Protocol):
    def read(self, *, since: float | None = None, until: float | None = None) -> AsyncIterator[Record]:
        """Records in stored order; `since`/`until` are unix times (inclusive, exclusive)."""

    def follow(self, *, since: float | None = None) -> AsyncIterator[Record]:
        """Like read(), then every new record as it arrives, until cancelled."""

    async def find(self, request_id: str) -> list[Record]:
        """Every record of one request id (the exchange, and any review decisions about it)."""

    async def last(self, count: int) -> list[Record]:
        """The newest `count` records, oldest first (what `gateway audit tail` starts with)."""

    async def close(self) -> None: ...


def unique(records: Iterable[Record]) -> Iterator[Record]:
    """Drop replayed duplicates (a record delivered twice around a Redis outage keeps its `id`)."""
    seen: set[str] = set()
    for record in records:
        key = record.get("id")
        if isinstance(key, str):
            if key in seen:
                continue
            seen.add(key)
        yield record


def in_range(record: Record, since: float | None, until: float | None) -> bool:
    ts = record.get("ts")
    if not isinstance(ts, (int, float)):
        return since is None and until is None
    return (since is None or ts >= since) and (until is None or ts < until)


class LocalFileReader:
    """`audit.jsonl` of the local store (or any JSONL export)."""

    def __init__(self, path: Path) -> None:
        self.path = path if path.suffix == ".jsonl" else path / AUDIT_FILE

    async def read(self, *, since: float | None = None, until: float | None = None) -> AsyncIterator[Record]:
        async for lines in self._batches(follow=False):
            for line in lines:
                record = orjson.loads(line)
                if in_range(record, since, until):
                    yield record

    async def follow(self, *, since: float | None = None) -> AsyncIterator[Record]:
        async for lines in self._batches(follow=True):
            for line in lines:
                record = orjson.loads(line)
                if in_range(record, since, None):
                    yield record

    async def find(self, request_id: str) -> list[Record]:
        needle = orjson.dumps(request_id)
        found: list[Record] = []
        async for lines in self._batches(follow=False):
            candidates = (orjson.loads(line) for line in lines if needle in line)  # the byte test skips parsing
            found.extend(record for record in candidates if record.get("request_id") == request_id)
        return found

    async def _batches(self, *, follow: bool) -> AsyncIterator[list[bytes]]:
        """The file's complete lines, a few MB at a time; with `follow`, then new ones as they are appended."""
        offset = 0
        while True:
            lines, offset = await asyncio.to_thread(self._lines_from, offset)
            if lines:
                yield lines
            elif follow:
                await asyncio.sleep(FOLLOW_POLL_S)
            else:
                return

    async def last(self, count: int) -> list[Record]:
        newest: collections.deque[Record] = collections.deque(maxlen=count)
        async for record in self.read():
            newest.append(record)
        return list(newest)

    def _lines_from(self, offset: int, limit: int = 4 * 1024 * 1024) -> tuple[list[bytes], int]:
        """Complete lines from `offset`, up to about `limit` bytes; a line still being written is left."""
        try:
            with open(self.path, "rb") as file:
                file.seek(offset)
                data = file.read(limit)
        except FileNotFoundError:
            return [], offset
        end = data.rfind(b"\n")
        if end < 0:
            return [], offset
        return [line for line in data[:end].split(b"\n") if line.strip()], offset + end + 1

    async def close(self) -> None:
        return None
