"""Writes audit records to a local append-only JSONL file from a background task.

Handlers only `submit()` (an append to a deque, never awaited); the writer task batches records and
appends them in a worker thread with fsync, so disk latency never reaches a request. Records are never
dropped: when the backlog passes `queue_size`, `accepting()` turns false and the pipeline refuses new
exchanges (`audit.on_unavailable: closed`) or serves them anyway (`open`), but what was submitted is kept.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
from pathlib import Path
from typing import BinaryIO, Protocol

import orjson

from gateway.audit.record import AuditRecord

log = logging.getLogger(__name__)

AUDIT_FILE = "audit.jsonl"
# After a wake-up the writer lets records gather this long, so that under load one write and one fsync
# carry hundreds of records instead of one or two (each handoff to the thread costs the loop CPU).
BATCH_LINGER_S = 0.02


class AuditSink(Protocol):
    def submit(self, record: AuditRecord) -> None:
        """Queue one record; must not block or raise."""

    def accepting(self) -> bool:
        """False when the backlog is over its bound (the pipeline applies `on_unavailable`)."""


class LocalAuditWriter:
    def __init__(self, directory: Path, queue_size: int) -> None:
        self.path = directory / AUDIT_FILE
        self._directory = directory
        self._queue_size = queue_size
        self._pending: collections.deque[AuditRecord] = collections.deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._file: BinaryIO | None = None
        self._closing = False
        self.written = 0

    def submit(self, record: AuditRecord) -> None:
        self._pending.append(record)
        self._wakeup.set()

    def accepting(self) -> bool:
        return len(self._pending) < self._queue_size

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._file = await loop.run_in_executor(None, self._open)
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def close(self) -> None:
        """Flush everything submitted so far, then stop; called last on shutdown, after requests drained."""
        if self._task is not None:
            # Let the task finish rather than cancel it: cancelling it mid-append would leave the batch it is
            # writing (the thread cannot be stopped) queued, and the final flush below would write it twice.
            self._closing = True
            self._wakeup.set()
            await self._task
        await self._flush()
        if self._file is not None:
            self._file.close()

    def _open(self) -> BinaryIO:
        self._directory.mkdir(parents=True, exist_ok=True)
        return open(self.path, "ab", buffering=0)  # noqa: SIM115 - owned for the writer's lifetime

    async def _run(self) -> None:
        while not self._closing:
            await self._wakeup.wait()
            if not self._closing:
                await asyncio.sleep(BATCH_LINGER_S)
            self._wakeup.clear()
            try:
                await self._flush()
            except OSError:
                log.exception("audit: cannot append to %s; keeping %d records in memory", self.path, len(self._pending))
                await asyncio.sleep(1.0)
                self._wakeup.set()

    async def _flush(self) -> None:
        if not self._pending or self._file is None:
            return
        batch = list(self._pending)
        await asyncio.get_running_loop().run_in_executor(None, self._append, batch)
        for _ in batch:  # only now are they safe: a failed write leaves them queued
            self._pending.popleft()
        self.written += len(batch)

    def _append(self, batch: list[AuditRecord]) -> None:
        """Runs in a worker thread: serialising a large batch must not hold up the event loop either."""
        assert self._file is not None
        self._file.write(b"".join([orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE) for record in batch]))
        os.fsync(self._file.fileno())
