"""Where sealed audit records end up: a local append-only file, or a Redis stream (`redis_stream.py`).

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
        await asyncio.to_thread(self.write_blocking, lines)

    def write_blocking(self, lines: Sequence[bytes]) -> None:
        """The write itself, for a caller already in a worker thread (the writer seals and stores in one
        hand-off: each hand-off costs the event loop more than appending a small batch does)."""
        try:
            self._append(lines)
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
