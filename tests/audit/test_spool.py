"""The audit spool: records kept in order across segments, restarts and crashes; never lost, never dropped."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.audit.spool import OFFSET_FILE, Spool, SpoolFull, SpoolInUse
from support import subprocess_env

MiB = 1024 * 1024


def record(index: int, pad: int = 40) -> bytes:
    return json.dumps({"i": index, "pad": "x" * pad}).encode()


def indices(records: list[bytes]) -> list[int]:
    return [json.loads(raw)["i"] for raw in records]


def segments(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.glob("spool-*.jsonl"))


def everything(spool: Spool) -> list[int]:
    return indices(spool.peek(10**9))


def test_append_peek_ack_keep_order_across_segments(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=MiB, segment_bytes=500) as spool:
        for start in range(0, 100, 10):
            spool.append([record(i) for i in range(start, start + 10)])
        assert len(segments(tmp_path)) > 5
        assert spool.pending_records == 100
        delivered: list[int] = []
        while not spool.is_empty:
            batch = spool.peek(7)
            assert spool.peek(7) == batch  # peek removes nothing
            delivered += indices(batch)
            spool.ack(len(batch))
        assert delivered == list(range(100))
        assert spool.pending_records == 0 and spool.pending_bytes == 0


def test_acked_segments_are_deleted(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=MiB, segment_bytes=500) as spool:
        for start in range(0, 60, 6):
            spool.append([record(i) for i in range(start, start + 6)])
        before = segments(tmp_path)
        spool.ack(30)
        after = segments(tmp_path)
        assert after == before[-len(after) :] and len(after) < len(before)
        assert spool.stored_bytes == sum((tmp_path / name).stat().st_size for name in after)
        spool.ack(30)
        assert segments(tmp_path) == [] and spool.stored_bytes == 0
        spool.append([record(60)])  # a fresh segment, never a deleted one's name
        assert segments(tmp_path) > before[-1:] and everything(spool) == [60]


def test_reopen_preserves_pending_records_and_offset(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=MiB, segment_bytes=2000) as spool:
        spool.append([record(i) for i in range(50)])
        spool.append([record(i) for i in range(50, 80)])
        spool.ack(55)  # into the second segment
        assert (tmp_path / OFFSET_FILE).exists()
    with Spool(tmp_path, max_bytes=MiB, segment_bytes=2000) as spool:
        assert everything(spool) == list(range(55, 80))
        assert spool.pending_records == 25
        spool.ack(5)
        spool.append([record(80)])
    with Spool(tmp_path, max_bytes=MiB, segment_bytes=2000) as spool:
        assert everything(spool) == list(range(60, 81))


def test_segments_left_over_by_a_crash_in_ack_are_not_replayed(tmp_path: Path) -> None:
    # ack() saves its offset, then deletes segments: a crash in between leaves acknowledged segments behind.
    with Spool(tmp_path, max_bytes=MiB, segment_bytes=500) as spool:
        for start in range(0, 40, 5):
            spool.append([record(i) for i in range(start, start + 5)])
        saved = {name: (tmp_path / name).read_bytes() for name in segments(tmp_path)}
        spool.ack(23)
    for name, data in saved.items():
        (tmp_path / name).write_bytes(data)
    with Spool(tmp_path, max_bytes=MiB, segment_bytes=500) as spool:
        assert everything(spool) == list(range(23, 40))
        spool.ack(17)  # everything: every segment is deleted
    for name, data in saved.items():
        (tmp_path / name).write_bytes(data)
    with Spool(tmp_path, max_bytes=MiB, segment_bytes=500) as spool:
        assert spool.is_empty and segments(tmp_path) == []
        spool.append([record(40)])
        assert segments(tmp_path)[0] > max(saved) and everything(spool) == [40]


def test_pending_bytes_exact_after_reopen(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=MiB, segment_bytes=700) as spool:
        for start in range(0, 40, 4):
            spool.append([record(i, pad=i) for i in range(start, start + 4)])
        spool.ack(9)
        expected = sum(len(record(i, pad=i)) + 1 for i in range(9, 40))
        assert spool.pending_bytes == expected
    with Spool(tmp_path, max_bytes=MiB, segment_bytes=700) as spool:
        assert spool.pending_bytes == expected
        assert everything(spool) == list(range(9, 40))


def test_torn_last_line_is_cut_off_on_open(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Spool(tmp_path, max_bytes=MiB) as spool:
        spool.append([record(i) for i in range(5)])
    newest = tmp_path / segments(tmp_path)[-1]
    size = newest.stat().st_size
    with open(newest, "ab") as handle:
        handle.write(b'{"i": 5, "pad": "xx')  # the crash came in the middle of an append
    with caplog.at_level(logging.WARNING), Spool(tmp_path, max_bytes=MiB) as spool:
        assert newest.stat().st_size == size
        assert "cutting 19 bytes" in caplog.text
        assert everything(spool) == list(range(5))
        spool.append([record(5)])
        assert everything(spool) == list(range(6))


def test_zero_filled_tail_is_cut_off_on_open(tmp_path: Path) -> None:
    # A crash can leave the file longer than what reached the disk, the rest zeros, and later lines complete.
    with Spool(tmp_path, max_bytes=MiB) as spool:
        spool.append([record(i) for i in range(3)])
    newest = tmp_path / segments(tmp_path)[-1]
    with open(newest, "ab") as handle:
        handle.write(b'{"i": 3, "pad": "x' + b"\0" * 4096 + b'xx"}\n' + record(4) + b"\n")
    with Spool(tmp_path, max_bytes=MiB) as spool:
        assert everything(spool) == [0, 1, 2]


def test_spool_full_is_raised_before_anything_is_written(tmp_path: Path) -> None:
    batch = [record(i) for i in range(10)]
    batch_bytes = sum(len(raw) + 1 for raw in batch)
    with Spool(tmp_path, max_bytes=3 * batch_bytes + 10, segment_bytes=batch_bytes) as spool:
        for _ in range(3):
            spool.append(batch)
        sizes = {name: (tmp_path / name).stat().st_size for name in segments(tmp_path)}
        with pytest.raises(SpoolFull, match=f"holds {3 * batch_bytes} of its {3 * batch_bytes + 10} bytes"):
            spool.append(batch)
        assert {name: (tmp_path / name).stat().st_size for name in segments(tmp_path)} == sizes
        assert len(everything(spool)) == 30 and spool.pending_bytes == 3 * batch_bytes
        spool.ack(10)  # the oldest segment is delivered and deleted: room again
        spool.append(batch)
        assert len(everything(spool)) == 30


def test_a_record_holding_a_newline_is_refused(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=MiB) as spool:
        with pytest.raises(ValueError, match="record 1 of the batch"):
            spool.append([record(0), b'{"a":\n1}'])
        with pytest.raises(ValueError):
            spool.append([b'{"a": "\0"}'])
        assert spool.is_empty and spool.peek(10) == []


def test_acknowledging_more_than_is_pending_is_refused(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=MiB) as spool:
        spool.append([record(i) for i in range(3)])
        spool.peek(3)
        with pytest.raises(ValueError, match="only 3 are pending"):
            spool.ack(4)
        assert everything(spool) == [0, 1, 2]  # nothing acknowledged by the refused call
        with pytest.raises(ValueError):
            spool.ack(-1)


def test_ten_thousand_records_round_trip_in_order(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=64 * MiB, segment_bytes=64 * 1024) as spool:
        for start in range(0, 10_000, 100):
            spool.append([record(i, pad=200) for i in range(start, start + 100)])
        assert spool.pending_records == 10_000
    with Spool(tmp_path, max_bytes=64 * MiB, segment_bytes=64 * 1024) as spool:
        delivered: list[int] = []
        while batch := spool.peek(333):
            delivered += indices(batch)
            spool.ack(len(batch))
        assert delivered == list(range(10_000))
        assert segments(tmp_path) == []


def test_a_failed_append_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = os.fsync
    failures = [OSError(5, "Input/output error")]

    def fsync(fd: int) -> None:
        if failures:
            raise failures.pop()
        real_fsync(fd)

    with Spool(tmp_path, max_bytes=MiB) as spool:
        spool.append([record(0)])
        monkeypatch.setattr(os, "fsync", fsync)
        with pytest.raises(OSError):
            spool.append([record(1), record(2)])
        spool.append([record(1), record(2)])  # the caller's retry: neither doubled nor garbled
        assert everything(spool) == [0, 1, 2]
    with Spool(tmp_path, max_bytes=MiB) as spool:
        assert everything(spool) == [0, 1, 2]


def test_one_spool_per_directory_and_private(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    with Spool(directory, max_bytes=MiB):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        with pytest.raises(SpoolInUse):
            Spool(directory, max_bytes=MiB)
    Spool(directory, max_bytes=MiB).close()


CHILD = r"""
import json, sys
from pathlib import Path
from gateway.audit.spool import Spool

spool = Spool(Path(sys.argv[1]), max_bytes=1 << 30, segment_bytes=256 * 1024)
index = int(sys.argv[2])
head = spool.peek(1)
acked = json.loads(head[0])["i"] if head else index
batches = 0
while True:
    spool.append([json.dumps({"i": i, "pad": "x" * 700}).encode() for i in range(index, index + 100)])
    index += 100
    print("appended", index, flush=True)
    batches += 1
    if batches % 3 == 0:
        count = len(spool.peek(150))
        print("acking", acked + count, flush=True)
        spool.ack(count)
        acked += count
        print("acked", acked, flush=True)
"""


def test_a_crash_loses_no_batch_whose_append_returned(tmp_path: Path) -> None:
    start = end = 0  # the spool holds records [start, end)
    for kill_after in (7, 23, 41):  # appends; each round continues the previous one's spool
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), str(end)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
        )
        assert child.stdout is not None and child.stderr is not None
        try:
            lines: list[str] = []
            appends = 0
            for line in child.stdout:
                lines.append(line)
                appends += line.startswith("appended")
                if appends == kill_after:
                    break
            child.send_signal(signal.SIGKILL)  # in the middle of the next append (or ack)
            lines += child.stdout  # what it printed before it died: those calls returned too
        finally:
            child.kill()
            child.wait(timeout=10)
        output = [line.split() for line in lines]
        assert sum(word == "appended" for word, _ in output) >= kill_after, child.stderr.read()
        returned = max(int(n) for word, n in output if word == "appended")
        acked = max([start] + [int(n) for word, n in output if word == "acked"])
        acking = max([acked] + [int(n) for word, n in output if word == "acking"])

        with Spool(tmp_path, max_bytes=1 << 30, segment_bytes=256 * 1024) as spool:
            present = everything(spool)
            assert present == list(range(present[0], present[0] + len(present)))  # in order, no gap, no double
            start, end = present[0], present[0] + len(present)
            assert acked <= start <= acking  # acknowledged stays so; an ack in flight may or may not have landed
            assert returned <= end <= returned + 100  # every returned batch; of the one in flight, maybe a prefix
            assert spool.pending_bytes == sum(len(record(i, pad=700)) + 1 for i in range(start, end))
