"""The Redis store of the audit trail: the stream backend the writer appends to, and its reader.

Loaded only with `store.backend: redis`, so a gateway on the embedded default never imports redis-py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.audit.backends import RECORD_FIELD, BackendUnavailable
from gateway.audit.reader import CHUNK, FOLLOW_POLL_S, RELATED_WITHIN_S, Record, entry_ms, in_range, start_id


class RedisStreamBackend:
    """`XADD <prefix><stream> MAXLEN ~ maxlen * r <json>` for each record, all of a batch in one round trip.

    The batch's commands are encoded in a worker thread straight into one RESP buffer and written with a
    single send; only the replies are read on the event loop (parsed by hiredis). redis-py's own pipeline
    builds each command in Python on the loop, which cost about three times as much per record: the writer
    shares its worker's event loop with requests, so that cost showed up in their latency.
    """

    name = "redis"

    def __init__(self, url: str, key: str, maxlen: int, *, timeout_s: float = 2.0) -> None:
        self.key = key
        self.maxlen = maxlen
        self.timeout_s = timeout_s
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
        )
        key_bytes, limit = key.encode(), str(maxlen).encode()
        # Everything of one XADD but the record itself: 8 arguments, the last one the record's JSON.
        self._head = b"*8\r\n$4\r\nXADD\r\n$%d\r\n%s\r\n$6\r\nMAXLEN\r\n$1\r\n~\r\n$%d\r\n%s\r\n$1\r\n*\r\n$%d\r\n%s\r\n" % (
            len(key_bytes), key_bytes, len(limit), limit, len(RECORD_FIELD), RECORD_FIELD,
        )

    async def open(self) -> None:
        return None  # connections are made on first use: Redis may well be down at start

    def _encode(self, lines: Sequence[bytes]) -> bytes:
        head = self._head
        return b"".join([head + b"$%d\r\n%s\r\n" % (len(line), line) for line in lines])

    async def write(self, lines: Sequence[bytes]) -> None:
        packed = await asyncio.to_thread(self._encode, lines)
        try:
            connection = await self.client.connection_pool.get_connection()
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise BackendUnavailable(f"redis: {type(exc).__name__}: {exc}") from None
        healthy = False
        try:
            async with asyncio.timeout(self.timeout_s):
                await connection.send_packed_command(packed, check_health=False)
                for _ in lines:
                    await connection.read_response()  # raises on an error reply (e.g. OOM under noeviction)
            healthy = True
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise BackendUnavailable(f"redis: {type(exc).__name__}: {exc}") from None
        finally:
            if not healthy:  # replies may be left unread on it: never hand this connection out again
                await connection.disconnect()
            await self.client.connection_pool.release(connection)

    async def available(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (RedisError, OSError, asyncio.TimeoutError):
            return False

    async def close(self) -> None:
        await self.client.aclose()


class RedisStreamReader:
    """The `<prefix>audit` stream. Stream ids are millisecond timestamps, so time ranges are id ranges."""

    def __init__(self, url: str, key: str, *, timeout_s: float = 5.0) -> None:
        self.key = key
        self.client = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    async def read(self, *, since: float | None = None, until: float | None = None) -> AsyncIterator[Record]:
        """By record time (`ts`). A record enters the stream after it happened (long after, when it was
        replayed from the spool), so the scan starts a little before `since` and runs to the stream's end."""
        async for _, record in self._entries(since):
            if in_range(record, since, until):
                yield record

    async def follow(self, *, since: float | None = None) -> AsyncIterator[Record]:
        last = "0-0"
        if since is not None:
            async for last, record in self._entries(since):
                yield record
        if last == "0-0":
            last = "$" if since is None else start_id(since)
        while True:
            response: Any = await self.client.xread({self.key: last}, count=CHUNK, block=int(FOLLOW_POLL_S * 1000))
            for _, entries in response or ():
                for entry_id, fields in entries:
                    last = entry_id.decode()
                    yield orjson.loads(fields[RECORD_FIELD])

    async def _entries(self, since: float | None) -> AsyncIterator[tuple[str, Record]]:
        """(stream id, record) from a little before `since` (or the start) to the stream's end, by chunks."""
        start = start_id(since)
        while True:
            entries: Any = await self.client.xrange(self.key, start, "+", count=CHUNK)
            for entry_id, fields in entries:
                yield entry_id.decode(), orjson.loads(fields[RECORD_FIELD])
            if len(entries) < CHUNK:
                return
            start = "(" + entries[-1][0].decode()  # exclusive: after the last one seen

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
                        stop_before_ms = entry_ms(entry_id) - int(RELATED_WITHIN_S * 1000)
            if len(entries) < CHUNK or (stop_before_ms is not None and entry_ms(entries[-1][0]) < stop_before_ms):
                break
            end = "(" + entries[-1][0].decode()
        found.reverse()
        return found

    async def last(self, count: int) -> list[Record]:
        entries: Any = await self.client.xrevrange(self.key, "+", "-", count=count)
        return [orjson.loads(fields[RECORD_FIELD]) for _, fields in reversed(entries)]

    async def close(self) -> None:
        await self.client.aclose()
