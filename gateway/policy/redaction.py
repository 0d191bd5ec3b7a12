"""Numbered placeholders for redacted spans, and putting originals back into a reply (`restore: true`).

One `Redactions` object lives on an Exchange: the same value always gets the same placeholder within an
exchange (`[EMAIL_1]` twice for the same address), so the model can still refer to it coherently. The
mapping back to originals exists only in memory, for that exchange, and only for rules that restore.
"""

from __future__ import annotations

import re

_PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*_[0-9]+\]")
PLACEHOLDER_MAX = 48  # longest placeholder a stream may hold back so it is never split across events


class Redactions:
    __slots__ = ("_assigned", "_counts", "originals")

    def __init__(self) -> None:
        self._assigned: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}
        self.originals: dict[str, str] = {}  # placeholder -> original, for restoring rules only

    def placeholder(self, kind: str, value: str, restore: bool) -> str:
        key = (kind, value)
        placeholder = self._assigned.get(key)
        if placeholder is None:
            count = self._counts.get(kind, 0) + 1
            self._counts[kind] = count
            placeholder = self._assigned[key] = f"[{kind}_{count}]"
        if restore:
            self.originals[placeholder] = value
        return placeholder

    def apply(self, text: str, spans: list[tuple[int, int, str, bool]]) -> str:
        """`text` with each (start, end, kind, restore) span replaced; overlapping spans merge into the first."""
        pieces: list[str] = []
        position = 0
        for start, end, kind, restore in sorted(spans):
            if start < position:  # overlaps a span already replaced
                continue
            pieces.append(text[position:start])
            pieces.append(self.placeholder(kind, text[start:end], restore))
            position = end
        pieces.append(text[position:])
        return "".join(pieces)

    def mask(self, text: str) -> str:
        """Every value this exchange redacted, replaced again by its placeholder: what `audit.content:
        redacted` stores of a reply that `restore` gave the originals back to."""
        for (_, value), placeholder in sorted(self._assigned.items(), key=lambda item: -len(item[0][1])):
            text = text.replace(value, placeholder)
        return text

    @property
    def restoring(self) -> bool:
        return bool(self.originals)

    def restore(self, text: str) -> str:
        if "[" not in text:
            return text
        originals = self.originals
        return _PLACEHOLDER.sub(lambda match: originals.get(match.group(0), match.group(0)), text)
