"""Where sealed audit records end up: a local append-only file, or a Redis stream.

A backend takes batches of finished JSON lines (sealed into their instance's hash chain, in order) and
either stores all of them or raises `BackendUnavailable`; the writer above decides what happens then
(the durable spool, for Redis). Both are append-only: nothing here edits or deletes a record, except
Redis's approximate `MAXLEN` trimming of the oldest entries, which `gateway audit verify` recognises.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

AUDIT_FILE = "audit.jsonl"
RECORD_FIELD = b"r"  # each stream entry holds one field: the record's JSON


class BackendUnavailable(Exception):
    """The backend could not take the batch; nothing of it can be assumed stored (retry or spool it)."""


class AuditBackend(Protocol):
    name: str

    async def open(self) -> None: ...

    async def write(self, lines: Sequence[bytes]) -> None:
        """Store every line, in order, or raise `BackendUnavailable`."""

    async def available(self) -> bool:
        """A cheap probe, used to decide when to replay the spool."""

    async def close(self) -> None: ...


class LocalFileBackend:
    """`<store.local_dir>/audit.jsonl`, appended and fsync'd in a worker thread (the embedded default)."""

    name = "local"

    def __init__(self, directory: Path) -> None:
        self.path = directory / AUDIT_FILE
        self._directory = directory
        self._file: BinaryIO | None = None

    async def open(self) -> None:
        self._file = await asyncio.to_thread(self._open)

    def _open(self) -> BinaryIO:
        self._directory.mkdir(parents=True, exist_ok=True)
        return open(self.path, "ab", buffering=0)  # noqa: SIM115 - owned for the backend's lifetime

    async def write(self, lines: Sequence[bytes]) -> None:
        try:
            await asyncio.to_thread(self._append, lines)
        except OSError as exc:
            raise BackendUnavailable(f"cannot append to {self.path}: {exc.strerror or exc}") from None

    def _append(self, lines: Sequence[bytes]) -> None:
        assert self._file is not None
        self._file.write(b"\n".join(lines) + b"\n")
        os.fsync(self._file.fileno())

    async def available(self) -> bool:
        return True

    async def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


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
