"""Step 3 of the package docstring's "Speed": base64 runs that decode to readable text, scored by what that
text says.

Only when the text has a digit (base64 of any sentence has some): one translation marks the base64
characters, and each run of 32 or more is decoded at its four possible alignments. Readable text is scored
by the same scorer, two levels deep at most, and the score raised (hiding text is itself suspicious);
readable text with nothing in it scores 0.2, binary nothing.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from typing import Final

from gateway.policy.detectors.injection.scoring import Hit, InjectionAssessment
from gateway.policy.detectors.injection.signals import ENCODING_EVASION

_ENCODED_BONUS: Final = 0.5  # hiding text in base64 is itself suspicious: the decoded score is raised by this
_ENCODED_PLAIN_TEXT_WEIGHT: Final = 0.2  # readable text with nothing suspicious in it: noted, never decisive
_MAX_DECODE_DEPTH: Final = 2
_B64_MIN_RUN: Final = 32  # 24 decoded bytes: shorter than any useful instruction

_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64_table() -> bytes:
    """Base64 characters become b'a', '=' stays, everything else a space: a long run is `b'a' * n`."""
    table = bytearray(b" " * 256)
    for c in _B64_ALPHABET:
        table[c] = ord("a")
    table[ord("=")] = ord("=")
    return bytes(table)


_B64_TABLE: Final = _b64_table()
_B64_RUN: Final = b"a" * _B64_MIN_RUN
_B64_RUN_END: Final = re.compile(rb"a*={0,2}")
# Bytes that readable text (ASCII or UTF-8) never contains: controls other than \t \n \r.
_TEXT_BYTES: Final = bytes([9, 10, 13, *range(32, 127), *range(128, 256)])


_Assess = Callable[[str, int], InjectionAssessment]  # the scorer's own: (decoded text, depth) -> assessment


def encoded_hits(text: str, raw: bytes, depth: int, assess: _Assess) -> list[Hit]:
    """Base64 runs in `text` (`raw`: its one-byte-per-character encoding) that decode to readable text, scored
    by what that text says (`assess` at `depth + 1`); nothing at the maximum depth or without a digit."""
    if depth >= _MAX_DECODE_DEPTH or not _has_digit(text):
        return []
    classes = raw.translate(_B64_TABLE)
    hits: list[Hit] = []
    at = classes.find(_B64_RUN)
    while at >= 0:
        end_match = _B64_RUN_END.match(classes, at)
        assert end_match is not None  # `a*` always matches
        end = end_match.end()
        weight = _decoded_weight(raw[at:end], depth, assess)
        if weight > 0.0:
            hits.append((at, end, ENCODING_EVASION, weight))
        at = classes.find(_B64_RUN, end)
    return hits


def _decoded_weight(blob: bytes, depth: int, assess: _Assess) -> float:
    text = _decode_base64_text(blob)
    if text is None:
        return 0.0
    inner = assess(text, depth + 1).score
    if inner <= 0.0:
        return _ENCODED_PLAIN_TEXT_WEIGHT
    return 1.0 - (1.0 - inner) * (1.0 - _ENCODED_BONUS)


def _has_digit(text: str) -> bool:
    # Ten memchr-speed scans; base64 of any sentence has digits, prose often has none.
    return (
        "0" in text or "1" in text or "2" in text or "3" in text or "4" in text
        or "5" in text or "6" in text or "7" in text or "8" in text or "9" in text
    )


def _decode_base64_text(blob: bytes) -> str | None:
    """The readable text a base64 run decodes to at one of its four alignments, or None (binary, not base64)."""
    core = blob.rstrip(b"=")
    for offset in range(4):
        part = core[offset:]
        if len(part) % 4 == 1:
            part = part[:-1]
        if len(part) < _B64_MIN_RUN - 4:
            return None
        try:
            data = binascii.a2b_base64(part + b"=" * (-len(part) % 4))
        except binascii.Error:
            continue
        if b" " not in data or len(data.translate(None, _TEXT_BYTES)) * 20 > len(data):
            continue
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None

