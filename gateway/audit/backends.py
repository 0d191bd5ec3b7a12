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
    """`XADD <prefix><stream> MAXLEN ~ maxlen * r <json>`, one pipeline (no transaction) per batch."""

    name = "redis"

    def __init__(self, url: str, key: str, maxlen: int, *, timeout_s: float = 2.0) -> None:
        self.key = key
        self.maxlen = maxlen
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
        )

    async def open(self) -> None:
        return None  # connections are made on first use: Redis may well be down at start

    async def write(self, lines: Sequence[bytes]) -> None:
        pipeline = self.client.pipeline(transaction=False)
        for line in lines:
            pipeline.xadd(self.key, {RECORD_FIELD: line}, maxlen=self.maxlen, approximate=True)
        try:
            await pipeline.execute()
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise BackendUnavailable(f"redis: {type(exc).__name__}: {exc}") from None

    async def available(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (RedisError, OSError, asyncio.TimeoutError):
            return False

    async def close(self) -> None:
        await self.client.aclose()
