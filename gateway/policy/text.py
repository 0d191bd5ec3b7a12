"""Where the text is: every text-bearing part of a request or reply, normalised for matching.

Checks never walk request bodies themselves. This module finds each string a model would read or write
(message content, content-part arrays, names, tool-call arguments, tool results, completion prompts,
embedding inputs, reply content) once per phase, as `TextPart`s that remember where they came from, so a
redaction can write the checked text back to exactly that place.

Normalisation (Unicode NFKC, invisible and format characters removed) happens before matching, so
look-alike letters and zero-width characters do not slip past a pattern. Unchanged parts are forwarded as
the client wrote them (normalising would break emoji sequences and the like); a redacted part is written
back in its normalised form, with the placeholders in it.
"""

from __future__ import annotations

import functools
import sys
import unicodedata
from collections.abc import Iterator, MutableMapping, MutableSequence
from dataclasses import dataclass
from typing import Any

from gateway.exchange import Endpoint

# Not category Cf, but invisible all the same: variation selectors, the combining grapheme joiner and the
# Hangul fillers are used to smuggle text past filters.
_ALSO_INVISIBLE = (
    [0x034F, 0x115F, 0x1160, 0x3164, 0xFFA0]
    + list(range(0xFE00, 0xFE10))
    + list(range(0xE0100, 0xE01F0))
)


@functools.cache
def _invisible_table() -> dict[int, None]:
    """Every format (Cf) character plus the look-alike-invisible ones, mapped to deletion (built once)."""
    table: dict[int, None] = {code: None for code in _ALSO_INVISIBLE}
    for code in range(0x80, sys.maxunicode + 1):
        if unicodedata.category(chr(code)) == "Cf":
            table[code] = None
    return table


def prepare() -> None:
    """Build the normalisation tables now (at policy load) rather than on the first non-ASCII request."""
    _invisible_table()


def normalise(text: str) -> str:
    """NFKC with invisible characters removed. Plain ASCII (most traffic) needs neither and is returned as is."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFKC", text).translate(_invisible_table())


@dataclass(slots=True)
class TextPart:
    """One string of a body: `text` is normalised, `holder[key]` is where it lives (for write-back)."""

    holder: MutableMapping[str, Any] | MutableSequence[Any]
    key: Any
    text: str

    def replace(self, text: str) -> None:
        self.text = text
        self.holder[self.key] = text


def request_parts(endpoint: Endpoint | None, body: dict[str, Any]) -> list[TextPart]:
    """Every text-bearing part of a request body, in document order."""
    if endpoint is Endpoint.CHAT:
        return list(_chat_request(body))
    if endpoint is Endpoint.COMPLETIONS:
        return list(_strings(body, "prompt"))
    if endpoint is Endpoint.EMBEDDINGS:
        return list(_strings(body, "input"))
    return []


def reply_parts(endpoint: Endpoint | None, reply: dict[str, Any]) -> list[TextPart]:
    """Every text-bearing part of a non-streamed reply (each choice's content, refusal and tool calls)."""
    parts: list[TextPart] = []
    for choice in _dicts(reply.get("choices")):
        if endpoint is Endpoint.COMPLETIONS:
            parts.extend(_string(choice, "text"))
            continue
        message = choice.get("message")
        if isinstance(message, dict):
            parts.extend(_message(message))
    return parts


def _chat_request(body: dict[str, Any]) -> Iterator[TextPart]:
    for message in _dicts(body.get("messages")):
        yield from _message(message)


def _message(message: dict[str, Any]) -> Iterator[TextPart]:
    """A chat message: content (string or parts), refusal, name, and tool/function call arguments."""
    yield from _string(message, "name")
    content = message.get("content")
    if isinstance(content, str):
        yield _part(message, "content", content)
    elif isinstance(content, list):
        for piece in _dicts(content):
            yield from _string(piece, "text")
            yield from _string(piece, "refusal")
    yield from _string(message, "refusal")
    for call in _dicts(message.get("tool_calls")):
        function = call.get("function")
        if isinstance(function, dict):
            yield from _string(function, "name")
            yield from _string(function, "arguments")
    function_call = message.get("function_call")  # the legacy single-function form
    if isinstance(function_call, dict):
        yield from _string(function_call, "arguments")


def _strings(holder: dict[str, Any], key: str) -> Iterator[TextPart]:
    """A field that is a string or a list of strings (prompts and embedding inputs; token arrays are skipped)."""
    value = holder.get(key)
    if isinstance(value, str):
        yield _part(holder, key, value)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                yield _part(value, index, item)


def _string(holder: dict[str, Any], key: str) -> Iterator[TextPart]:
    value = holder.get(key)
    if isinstance(value, str) and value:
        yield _part(holder, key, value)


def _part(holder: Any, key: Any, raw: str) -> TextPart:
    return TextPart(holder, key, normalise(raw))


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                yield item
