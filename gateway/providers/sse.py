"""Incremental Server-Sent Events decoding and encoding, for the OpenAI streaming wire format."""

from __future__ import annotations

from typing import Any

import orjson

DONE = object()  # the upstream's `data: [DONE]`
_DONE_LINE = b"[DONE]"
DONE_EVENT = b"data: [DONE]\n\n"


class SSEDecoder:
    """Feeds raw bytes, yields each complete event's `data` payload (bytes) or `DONE`.

    Chunks split anywhere (mid-line, mid-CRLF) are reassembled; comments and `event:`/`id:` lines are
    ignored, as the OpenAI protocol carries everything in `data:`.
    """

    __slots__ = ("_buffer", "_max_event_bytes")

    def __init__(self, max_event_bytes: int = 8 * 1024 * 1024) -> None:
        self._buffer = b""
        self._max_event_bytes = max_event_bytes

    def feed(self, chunk: bytes) -> list[Any]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events: list[Any] = []
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            payload = self._data_of(buffer[start:end])
            if payload is not None:
                events.append(DONE if payload == _DONE_LINE else payload)
            start = end + 2
        self._buffer = buffer[start:]
        if len(self._buffer) > self._max_event_bytes:
            raise ValueError(f"SSE event larger than {self._max_event_bytes} bytes")
        return events

    @property
    def pending(self) -> bytes:
        """Bytes of an event that has not been terminated yet."""
        return self._buffer

    @staticmethod
    def _data_of(block: bytes) -> bytes | None:
        if block.startswith(b"data: ") and b"\n" not in block:  # the usual event: one data line
            return block[6:]
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
        return b"\n".join(data) if data else None


def encode_event(event: Any) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"
