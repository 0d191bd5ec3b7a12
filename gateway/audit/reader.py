"""Reading the audit trail back: ranges by time, following new records, one exchange by request id.

The same interface over both backends, so `gateway audit …` and `GET /admin/audit/{request_id}` work the
same against a local file or a Redis stream. Readers hand out records as stored; replayed duplicates (same
`id`) are collapsed by `unique()` for display, while `gateway audit verify` sees everything.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis

from gateway.audit.backends import AUDIT_FILE, RECORD_FIELD
from gateway.config.model import GatewayConfig

Record = dict[str, Any]
CHUNK = 1000
RELATED_WITHIN_S = 24 * 3600  # a review may decide hours after the exchange was parked


CLOCK_SKEW_S = 60.0  # instances' clocks and Redis's may disagree by this much


def _start_id(since: float | None) -> str:
    return "-" if since is None else f"{max(int((since - CLOCK_SKEW_S) * 1000), 0)}-0"


def _entry_ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])
FOLLOW_POLL_S = 0.5


def reader_for(config: GatewayConfig) -> AuditReader:
    """The reader of the store a config names (what the server writes, the CLI and admin API read)."""
    if config.store.backend == "redis":
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


def _in_range(record: Record, since: float | None, until: float | None) -> bool:
    ts = record.get("ts")
    if not isinstance(ts, (int, float)):
        return since is None and until is None
    return (since is None or ts >= since) and (until is None or ts < until)


class LocalFileReader:
    """`audit.jsonl` of the local store (or any JSONL export)."""

    def __init__(self, path: Path) -> None:
        self.path = path if path.suffix == ".jsonl" else path / AUDIT_FILE

    async def read(self, *, since: float | None = None, until: float | None = None) -> AsyncIterator[Record]:
        offset = 0
        while True:
            lines, offset = await asyncio.to_thread(self._lines_from, offset)
            if not lines:
                return
            for line in lines:
                record = orjson.loads(line)
                if _in_range(record, since, until):
                    yield record

    async def follow(self, *, since: float | None = None) -> AsyncIterator[Record]:
        offset = 0
        while True:
            lines, offset = await asyncio.to_thread(self._lines_from, offset)
            for line in lines:
                record = orjson.loads(line)
                if _in_range(record, since, None):
                    yield record
            if not lines:
                await asyncio.sleep(FOLLOW_POLL_S)

    async def find(self, request_id: str) -> list[Record]:
        needle = orjson.dumps(request_id)
        found: list[Record] = []
        offset = 0
        while True:
            lines, offset = await asyncio.to_thread(self._lines_from, offset)
            if not lines:
                return found
            candidates = (orjson.loads(line) for line in lines if needle in line)  # the byte test skips parsing
            found.extend(record for record in candidates if record.get("request_id") == request_id)

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


class RedisStreamReader:
    """The `<prefix>audit` stream. Stream ids are millisecond timestamps, so time ranges are id ranges."""

    def __init__(self, url: str, key: str, *, timeout_s: float = 5.0) -> None:
        self.key = key
        self.client = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    async def read(self, *, since: float | None = None, until: float | None = None) -> AsyncIterator[Record]:
        """By record time (`ts`). A record enters the stream after it happened (long after, when it was
        replayed from the spool), so the scan starts a little before `since` and runs to the stream's end."""
        start = _start_id(since)
        while True:
            entries: Any = await self.client.xrange(self.key, start, "+", count=CHUNK)
            for _, fields in entries:
                record = orjson.loads(fields[RECORD_FIELD])
                if _in_range(record, since, until):
                    yield record
            if len(entries) < CHUNK:
                return
            start = "(" + entries[-1][0].decode()  # exclusive: after the last one seen

    async def follow(self, *, since: float | None = None) -> AsyncIterator[Record]:
        last = "0-0"
        async for record in self._read_with_ids(since):
            last, payload = record
            yield payload
        if last == "0-0":
            last = "$" if since is None else _start_id(since)
        while True:
            response: Any = await self.client.xread({self.key: last}, count=CHUNK, block=int(FOLLOW_POLL_S * 1000))
            for _, entries in response or ():
                for entry_id, fields in entries:
                    last = entry_id.decode()
                    yield orjson.loads(fields[RECORD_FIELD])

    async def _read_with_ids(self, since: float | None) -> AsyncIterator[tuple[str, Record]]:
        if since is None:
            return
        start = _start_id(since)
        while True:
            entries: Any = await self.client.xrange(self.key, start, "+", count=CHUNK)
            for entry_id, fields in entries:
                yield entry_id.decode(), orjson.loads(fields[RECORD_FIELD])
            if len(entries) < CHUNK:
                return
            start = "(" + entries[-1][0].decode()

    async def find(self, request_id: str, *, max_scan_s: float = 30.0) -> list[Record]:
        """Newest first, so recent exchanges come back at once (the byte test skips parsing the rest).

        A request's records (its exchange, the review decisions about it) lie within `RELATED_WITHIN_S` of
        each other; once one is found, the scan stops that far before it.
        """
        needle = orjson.dumps(request_id)
        found: list[Record] = []
        end = "+"
        stop_before_ms: int | None = None
        deadline = time.monotonic() + max_scan_s
        while time.monotonic() < deadline:
            entries: Any = await self.client.xrevrange(self.key, end, "-", count=CHUNK)
            for entry_id, fields in entries:
                raw = fields[RECORD_FIELD]
                if needle in raw:
                    record = orjson.loads(raw)
                    if record.get("request_id") == request_id:
                        found.append(record)
                        stop_before_ms = _entry_ms(entry_id) - int(RELATED_WITHIN_S * 1000)
            if len(entries) < CHUNK or (stop_before_ms is not None and _entry_ms(entries[-1][0]) < stop_before_ms):
                break
            end = "(" + entries[-1][0].decode()
        found.reverse()
        return found

    async def last(self, count: int) -> list[Record]:
        entries: Any = await self.client.xrevrange(self.key, "+", "-", count=count)
        return [orjson.loads(fields[RECORD_FIELD]) for _, fields in reversed(entries)]

    async def close(self) -> None:
        await self.client.aclose()
