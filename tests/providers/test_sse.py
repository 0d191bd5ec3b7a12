"""SSE decoding and encoding for the OpenAI streaming wire format."""

from __future__ import annotations

import orjson
import pytest

from gateway.providers.sse import DONE, DONE_EVENT, SSEDecoder, encode_event

WIRE = b'data: {"a": 1}\n\ndata: {"b": 2}\n\ndata: [DONE]\n\n'


def decode_all(chunks: list[bytes]) -> list[object]:
    decoder = SSEDecoder()
    events: list[object] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    assert decoder.pending == b""
    return events


def test_whole_events() -> None:
    assert decode_all([WIRE]) == [b'{"a": 1}', b'{"b": 2}', DONE]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13])
def test_events_split_anywhere(size: int) -> None:
    chunks = [WIRE[i : i + size] for i in range(0, len(WIRE), size)]
    assert decode_all(chunks) == [b'{"a": 1}', b'{"b": 2}', DONE]


@pytest.mark.parametrize("size", [1, 2, 4, len(WIRE)])
def test_crlf_and_cr_line_endings(size: int) -> None:
    crlf = WIRE.replace(b"\n", b"\r\n")
    assert decode_all([crlf[i : i + size] for i in range(0, len(crlf), size)]) == [b'{"a": 1}', b'{"b": 2}', DONE]
    assert decode_all([WIRE.replace(b"\n", b"\r")]) == [b'{"a": 1}', b'{"b": 2}', DONE]


def test_comments_event_and_id_lines_are_ignored() -> None:
    wire = b': keep-alive\n\nevent: message\nid: 7\ndata: {"x": 1}\nretry: 10\n\n'
    assert decode_all([wire]) == [b'{"x": 1}']


def test_multi_line_data_is_joined() -> None:
    assert decode_all([b'data: {"x":\ndata: 1}\n\n']) == [b'{"x":\n1}']


def test_data_without_space() -> None:
    assert decode_all([b'data:{"x":1}\n\ndata:[DONE]\n\n']) == [b'{"x":1}', DONE]


def test_unterminated_event_stays_pending() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"x": 1}\n') == []
    assert decoder.pending == b'data: {"x": 1}\n'
    assert decoder.feed(b"\n") == [b'{"x": 1}']


def test_oversized_event_is_refused() -> None:
    decoder = SSEDecoder(max_event_bytes=64)
    decoder.feed(b"data: " + b"x" * 40)
    with pytest.raises(ValueError, match="larger than 64 bytes"):
        decoder.feed(b"y" * 40)


def test_encode_round_trip() -> None:
    event = {"id": "c1", "choices": [{"delta": {"content": "h\u00e9llo \n"}}]}
    wire = encode_event(event) + DONE_EVENT
    assert wire.endswith(b"\n\ndata: [DONE]\n\n")
    decoded = decode_all([wire])
    assert decoded[-1] is DONE
    assert orjson.loads(decoded[0]) == event  # type: ignore[arg-type]
