"""A durable local spool for audit records while Redis is slow or down, replayed in order once it is back.

Records (one serialised JSON document each) are appended to segment files `spool-<16-digit sequence>.jsonl`,
one line per record, with one write and one fsync per batch: when `append()` returns, the batch survives a
crash of the process or the machine. A reader `peek()`s the oldest records, delivers them, then `ack()`s
them; acknowledged segments are deleted, and progress inside a segment is kept in `spool.offset`.

Delivery is at-least-once. `ack()` saves its progress durably before it returns, so after a clean restart
or a crash nothing acknowledged is replayed by this implementation; but a crash between delivering records
and acknowledging them replays them, so readers must collapse duplicates by record id (they do). What the
spool never does is lose a record whose `append()` returned, or drop records to make room: when a batch
does not fit in `max_bytes`, `append()` raises `SpoolFull` and the caller decides (refuse traffic, or serve
and count the records it could not keep).

The I/O blocks: callers run every method in a worker thread (asyncio.to_thread / run_in_executor). Calls
are serialised by an internal lock (uncontended, it costs nothing next to an fsync), so an appending task
and a replaying task may share one Spool. One Spool owns its directory: a second one, in this process or
another, fails with `SpoolInUse`, because two writers would interleave their lines and each one's crash
recovery would cut off the other's appends in progress.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

log = logging.getLogger(__name__)

OFFSET_FILE = "spool.offset"
_OFFSET_SCRATCH = "spool.offset.tmp"
_SEGMENT_NAME = re.compile(r"spool-(\d{16})\.jsonl")
_OFFSET_RECORD = re.compile(rb"(spool-\d{16}\.jsonl) (\d+)\n")
_READ_CHUNK = 256 * 1024
# pending_records after a reopen counts the newest segment's lines and estimates the older segments (which
# are not read on open, so that a large spool does not delay startup) from its mean record size, or this.
_ESTIMATED_RECORD_BYTES = 1024


class SpoolFull(Exception):
    """A batch would take the spool past `max_bytes`; nothing of it was written."""


class SpoolInUse(Exception):
    """Another Spool, in this process or another, already owns the directory."""


def segment_name(sequence: int) -> str:
    return f"spool-{sequence:016d}.jsonl"


class Spool:
    """An append-only, crash-safe queue of records on local disk (see the module docstring for the contract).

    `max_bytes` bounds the disk used: the bytes of all segment files, which include the delivered start of
    the oldest segment (at most one segment's worth) until that segment is fully acknowledged. A batch that
    would take the newest segment past `segment_bytes` starts a new one, so a segment only exceeds it when
    a single batch does.
    """

    def __init__(self, directory: Path, *, max_bytes: int, segment_bytes: int = 8 * 1024 * 1024) -> None:
        if max_bytes <= 0 or segment_bytes <= 0:
            raise ValueError("max_bytes and segment_bytes must be positive")
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        # Sequence -> bytes of complete lines, oldest first. Reads never go past these sizes, so bytes of a
        # failed append that could not be cut off are never mistaken for records.
        self._segments: dict[int, int] = {}
        self._offset = 0  # bytes of the oldest segment already acknowledged
        self._stored_bytes = 0
        self._pending_records = 0
        self._last_sequence = 0  # highest ever used here, so a deleted segment's name is never reused
        self._fd: int | None = None  # the newest segment, open for appends
        self._needs_dir_sync = False
        self._peeked: list[tuple[int, int]] = []  # (segment, end offset) of each record the last peek returned
        self._closed = False
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                fcntl.flock(self._dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SpoolInUse(f"audit spool {directory} is already open") from None
            self._recover()
        except BaseException:
            self._release()
            raise

    # --- public API -------------------------------------------------------------------------------------

    @property
    def pending_bytes(self) -> int:
        """Bytes of records not yet acknowledged, newlines included; exact, also after a reopen."""
        return self._stored_bytes - self._offset

    @property
    def stored_bytes(self) -> int:
        """Bytes of the segment files: what `max_bytes` bounds."""
        return self._stored_bytes

    @property
    def pending_records(self) -> int:
        """Records not yet acknowledged: exact for what this Spool appended, estimated for older segments."""
        return self._pending_records

    @property
    def is_empty(self) -> bool:
        return self.pending_bytes == 0

    def append(self, records: Sequence[bytes]) -> None:
        """Appends a batch durably (one write, one fsync): when this returns, the batch survives a crash.

        Raises SpoolFull, having written nothing, when the batch does not fit; on an OSError nothing of the
        batch remains either (it is cut off again), so the caller can simply retry it.
        """
        if not records:
            return
        blob = _frame(records)
        with self._lock:
            self._check_open()
            if self._stored_bytes + len(blob) > self.max_bytes:
                raise SpoolFull(
                    f"audit spool {self.directory} holds {self._stored_bytes} of its {self.max_bytes} bytes "
                    f"({self.pending_bytes} pending); a batch of {len(records)} records ({len(blob)} bytes) does not fit"
                )
            if self._fd is None or self._segment_overflows(len(blob)):
                self._start_segment()
            assert self._fd is not None
            sequence = self._newest
            size = self._segments[sequence]
            try:
                _write_all(self._fd, blob)
                os.fsync(self._fd)
                if self._needs_dir_sync:  # until it is, a crash could lose the new segment's name
                    os.fsync(self._dir_fd)
                    self._needs_dir_sync = False
            except BaseException:
                self._cut_off(size)
                raise
            self._segments[sequence] = size + len(blob)
            self._stored_bytes += len(blob)
            self._pending_records += len(records)

    def peek(self, max_records: int) -> list[bytes]:
        """The oldest unacknowledged records (at most `max_records`), in append order, without removing them."""
        if max_records < 0:
            raise ValueError("max_records must not be negative")
        with self._lock:
            self._check_open()
            records, self._peeked = self._scan(max_records, keep=True)
            return records

    def ack(self, count: int) -> None:
        """Marks the `count` oldest records delivered; durable when this returns (see the module docstring)."""
        if count < 0:
            raise ValueError("count must not be negative")
        with self._lock:
            self._check_open()
            if count == 0:
                return
            ends = self._peeked if count <= len(self._peeked) else self._scan(count, keep=False)[1]
            if len(ends) < count:
                raise ValueError(f"cannot acknowledge {count} records: only {len(ends)} are pending")
            sequence, offset = ends[count - 1]
            # Saved before any segment is deleted: a crash in between then leaves only acknowledged segments,
            # which the next open deletes, instead of segments it would replay from their start.
            self._save_offset(sequence, offset)
            self._peeked = ends[count:]
            for older in [s for s in self._segments if s < sequence]:
                self._delete(older)
            self._offset = offset
            self._drop_consumed()
            self._pending_records = max(0, self._pending_records - count) if self.pending_bytes else 0

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    # --- opening ----------------------------------------------------------------------------------------

    def _recover(self) -> None:
        """Resumes where the last owner stopped: cuts off an unfinished append, applies the saved offset."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.directory / _OFFSET_SCRATCH)
        sequences = sorted(int(m.group(1)) for name in os.listdir(self.directory) if (m := _SEGMENT_NAME.fullmatch(name)))
        newest_data = b""
        for sequence in sequences[:-1]:
            self._segments[sequence] = self._recover_older(sequence)
        if sequences:
            newest_data = self._recover_newest(sequences[-1])
            self._segments[sequences[-1]] = len(newest_data)
        self._last_sequence = sequences[-1] if sequences else 0
        self._stored_bytes = sum(self._segments.values())
        saved = self._load_offset()
        if saved is not None:
            sequence, offset = saved
            self._last_sequence = max(self._last_sequence, sequence)
            # Everything before the saved position was acknowledged, so older segments are left over from a
            # crash (or a failed unlink) in ack(). If the named segment is gone, all of it was acknowledged.
            for older in [s for s in self._segments if s < sequence]:
                self._delete(older)
            if sequence in self._segments:
                self._offset = self._checked_offset(sequence, offset)
        if sequences:
            start = self._offset if len(self._segments) == 1 else 0
            newest_lines = newest_data.count(b"\n")
            mean = len(newest_data) / newest_lines if newest_lines else _ESTIMATED_RECORD_BYTES
            older_bytes = self.pending_bytes - (len(newest_data) - start)
            self._pending_records = newest_data.count(b"\n", start) + round(older_bytes / mean)
        self._drop_consumed()
        if self._segments:
            self._fd = os.open(self._path(self._newest), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            log.info(
                "audit spool %s: resuming with %d bytes (about %d records) pending in %d segments",
                self.directory, self.pending_bytes, self._pending_records, len(self._segments),
            )

    def _recover_newest(self, sequence: int) -> bytes:
        """Reads the newest segment, cutting off what a crash left of an unfinished append.

        That append had not returned, so none of it was promised to anyone. Besides a last line without its
        newline, a crash can leave the file longer than the data that reached the disk, zero-filled: JSON
        never holds a NUL byte (append() refuses them), so the first NUL marks where the unfinished data begins.
        """
        path = self._path(sequence)
        data = path.read_bytes()
        nul = data.find(b"\0")
        keep = (data.rfind(b"\n", 0, nul) if nul >= 0 else data.rfind(b"\n")) + 1
        if keep < len(data):
            log.warning("audit spool: cutting %d bytes of an unfinished append off the end of %s", len(data) - keep, path.name)
            _truncate(path, keep)
        return data[:keep]

    def _recover_older(self, sequence: int) -> int:
        """An older segment ends with a complete line unless a failed append could not be cut off."""
        path = self._path(sequence)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
                return size
            keep = _complete_length(fd, size)
        finally:
            os.close(fd)
        log.warning("audit spool: cutting %d bytes of an unfinished append off the end of %s", size - keep, path.name)
        _truncate(path, keep)
        return keep

    def _load_offset(self) -> tuple[int, int] | None:
        try:
            raw = (self.directory / OFFSET_FILE).read_bytes()
        except FileNotFoundError:
            return None
        match = _OFFSET_RECORD.fullmatch(raw)
        if match is None:
            log.warning("audit spool: %s is unreadable (%r); replaying from the oldest segment", OFFSET_FILE, raw[:100])
            return None
        sequence = _SEGMENT_NAME.fullmatch(match.group(1).decode())
        assert sequence is not None
        return int(sequence.group(1)), int(match.group(2))

    def _checked_offset(self, sequence: int, offset: int) -> int:
        """The saved offset, unless it does not fall on a line boundary: then replay the segment (safe)."""
        size = self._segments[sequence]
        if offset == 0 or offset == size:
            return offset
        if offset < size:
            with open(self._path(sequence), "rb", buffering=0) as handle:
                if os.pread(handle.fileno(), 1, offset - 1) == b"\n":
                    return offset
        name = segment_name(sequence)
        log.warning("audit spool: %s offset %d is not a line boundary of %s; replaying it", OFFSET_FILE, offset, name)
        return 0

    # --- writing ----------------------------------------------------------------------------------------

    @property
    def _newest(self) -> int:
        return next(reversed(self._segments))

    def _path(self, sequence: int) -> Path:
        return self.directory / segment_name(sequence)

    def _segment_overflows(self, size: int) -> bool:
        """Segments stay under segment_bytes (so acknowledged ones are deleted soon), bar single huge batches."""
        current = self._segments[self._newest]
        return current > 0 and current + size > self.segment_bytes

    def _start_segment(self) -> None:
        self._close_segment()
        sequence = self._last_sequence + 1
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        self._fd = os.open(self._path(sequence), flags, 0o600)
        self._last_sequence = sequence
        self._segments[sequence] = 0
        self._needs_dir_sync = True

    def _cut_off(self, size: int) -> None:
        """Undoes a failed append, so a retry of the batch neither doubles nor garbles it.

        If the file cannot be cut back, it is abandoned: the next append starts a new segment, and reads stop
        at `size`, before the failed bytes (which a reopen cuts off, or keeps as whole, duplicate records).
        """
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, size)
        except OSError:
            log.exception("audit spool: cannot cut a failed append off %s; starting a new segment", segment_name(self._newest))
            self._close_segment()

    def _close_segment(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _save_offset(self, sequence: int, offset: int) -> None:
        """Atomically and durably: written aside, fsynced, renamed over, and the rename fsynced."""
        scratch = self.directory / _OFFSET_SCRATCH
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, f"{segment_name(sequence)} {offset}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(scratch, self.directory / OFFSET_FILE)
        os.fsync(self._dir_fd)

    # --- reading and deleting ---------------------------------------------------------------------------

    def _scan(self, limit: int, *, keep: bool) -> tuple[list[bytes], list[tuple[int, int]]]:
        """Up to `limit` oldest pending records (if `keep`) and where each one ends."""
        records: list[bytes] = []
        ends: list[tuple[int, int]] = []
        start = self._offset
        for sequence, size in self._segments.items():
            if len(ends) >= limit:
                break
            if start < size:
                self._scan_segment(sequence, start, size, limit, keep, records, ends)
            start = 0
        return records, ends

    def _scan_segment(
        self, sequence: int, start: int, size: int, limit: int, keep: bool, records: list[bytes], ends: list[tuple[int, int]]
    ) -> None:
        position = start  # where the next record begins
        read_to = start
        buffered = b""  # the bytes from `position` to `read_to`
        with open(self._path(sequence), "rb", buffering=0) as handle:
            handle.seek(start)
            while len(ends) < limit and read_to < size:
                chunk = handle.read(min(_READ_CHUNK, size - read_to))
                if not chunk:
                    raise OSError(errno.EIO, f"audit spool segment is shorter than its {size} bytes", str(handle.name))
                read_to += len(chunk)
                buffered = buffered + chunk if buffered else chunk
                begin = 0
                while len(ends) < limit and (newline := buffered.find(b"\n", begin)) >= 0:
                    if keep:
                        records.append(buffered[begin:newline])
                    position += newline + 1 - begin
                    ends.append((sequence, position))
                    begin = newline + 1
                buffered = buffered[begin:]
        if len(ends) < limit and buffered:
            raise OSError(errno.EIO, "audit spool segment does not end with a complete record", str(self._path(sequence)))

    def _drop_consumed(self) -> None:
        """Deletes the oldest segments while every record in them is acknowledged (the saved offset says so)."""
        while self._segments:
            oldest, size = next(iter(self._segments.items()))
            if self._offset < size:
                return
            if len(self._segments) == 1:  # everything delivered: the next append starts a fresh segment
                self._close_segment()
                self._needs_dir_sync = False
            self._delete(oldest)
            self._offset = 0

    def _delete(self, sequence: int) -> None:
        """Forgets an acknowledged segment; a file that cannot be unlinked is left to the next open to delete."""
        self._stored_bytes -= self._segments.pop(sequence)
        try:
            os.unlink(self._path(sequence))
        except FileNotFoundError:
            pass
        except OSError:
            log.exception("audit spool: cannot delete the acknowledged segment %s", segment_name(sequence))

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"audit spool {self.directory} is closed")

    def _release(self) -> None:
        self._close_segment()
        os.close(self._dir_fd)  # also releases the directory's flock


def _frame(records: Sequence[bytes]) -> bytes:
    """One line per record. A newline inside a record would split it in two on replay, and a NUL byte would
    read as crash damage on reopen; serialised JSON holds neither, so either one means a caller's bug."""
    blob = b"\n".join([*records, b""])
    if blob.count(b"\n") != len(records) or b"\0" in blob:
        bad = next(i for i, record in enumerate(records) if b"\n" in record or b"\0" in record)
        raise ValueError(f"record {bad} of the batch holds a newline or NUL byte; records must be single-line JSON")
    return blob


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _complete_length(fd: int, size: int) -> int:
    """The length of the file's longest prefix that ends with a newline (0 if there is none)."""
    end = size
    while end > 0:
        start = max(0, end - _READ_CHUNK)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _truncate(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
