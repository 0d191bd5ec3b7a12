"""The anchored single pass: where in a text the detailed patterns are tried, and the matches they find.

Step 1 and 2 of the package docstring's "Speed": one pass over the folded bytes finds the anchors (plus
`str.find` for the punctuation ones, behind a cheap gate), then, near each anchor only, the word starts
that can begin one of the family's patterns are tried with `match`, and the punctuation patterns searched
in a small window. Every match is weighed in its context (`weights.weigh`) and returned as a `Hit`; the
window scores are `scoring`'s job.
"""

from __future__ import annotations

import re
from typing import Any, Final

from gateway.policy.detectors.injection.compiled import Family, anchor_key, compile_family, trie
from gateway.policy.detectors.injection.families import FAMILIES
from gateway.policy.detectors.injection.scoring import Hit
from gateway.policy.detectors.injection.weights import weigh

try:  # An optional speed-up of the anchor pass only: the anchors found, and so every result, are the same.
    import re2 as _re2
except ImportError:  # pragma: no cover - depends on the machine
    _re2 = None


def _word_table() -> bytes:
    """Case folded, letters, digits and "_" kept, everything else (ASCII punctuation, '?' standing for
    non-ASCII) a space: a word start is then b" " + letter, and anchors are found as b" " + word prefix.
    "_" is a word character for `re` too ("\\bignore" does not match in "_ignore"), and keeping it makes
    `system_prompt` and `tenant_instructions` in pasted code one identifier each, not anchor hits."""
    table = bytearray(b" " * 256)
    table[ord("_")] = ord("_")
    for c in range(ord("0"), ord("9") + 1):
        table[c] = c
    for c in range(ord("a"), ord("z") + 1):
        table[c] = c
        table[c - 32] = c
    return bytes(table)


_WORD_TABLE: Final = _word_table()


def _lower(text: str) -> str:
    """`text.lower()` with the same length, so offsets in the result are offsets in `text`."""
    low = text.lower()
    if len(low) == len(text):
        return low
    # U+0130 (capital I with dot) is the only code point whose lower case is two characters long.
    return text.replace("\u0130", "i").lower()


class Scanner:
    """The compiled families and the anchor pass over them; built once per `InjectionScorer`, stateless after.

    `_re2` is read here, when a scanner is built: the tests and the benchmark set it to None to get the
    stdlib anchor pass."""

    __slots__ = ("families", "_gated", "_anchor_family", "_anchors", "_gate_re2")

    def __init__(self) -> None:
        self.families: tuple[Family, ...] = tuple(compile_family(spec) for spec in FAMILIES)
        self._gated = tuple(
            (index, gate, literal) for index, spec in enumerate(FAMILIES) for gate, literal in spec.gated
        )
        # The anchor pass: b" " (a word start) + any anchor. A hit is mapped back to its family by its words.
        anchor_family: dict[bytes, int] = {}
        keys: list[str] = []
        for index, spec in enumerate(FAMILIES):
            for anchor in spec.anchors:
                name = anchor.split()
                if not name or not all(word.isascii() and word.isalnum() for word in name):  # pragma: no cover
                    raise AssertionError(f"anchor {anchor!r} must be ASCII words")
                words = (" " + " ".join(name)).encode("ascii")
                if words in anchor_family:  # pragma: no cover - a table error, caught at import by the tests
                    raise AssertionError(f"anchor {anchor!r} belongs to two families")
                anchor_family[words] = index
                if anchor.endswith(" "):  # the whole word "dan": the match includes its separator
                    anchor_family[words + b" "] = index
                keys.append(anchor_key(anchor))
        self._anchor_family = anchor_family
        alternation = trie(keys)
        # A lookahead on the possible first characters rejects most words (those starting with t, a, w, c, b,
        # l...) after one set-membership test, before the alternation is tried.
        firsts = "".join(sorted({key[0] for key in keys}))
        anchors = " (?=[" + re.escape(firsts) + "])" + alternation
        self._anchors: re.Pattern[bytes] = re.compile(anchors.encode("ascii"))
        # With google-re2 the anchor pass first asks the DFA whether there is any anchor at all: clean text
        # stops there. Positions still come from `re` (re2's wrapper costs microseconds per match object).
        self._gate_re2: Any = _re2.compile((" " + alternation).encode("ascii")) if _re2 is not None else None

    def hits(self, text: str, raw: bytes) -> list[Hit]:
        """Every weighed match in `text` (`raw`: `text` encoded to ASCII with "?" for the rest, one byte per
        character)."""
        # A separator before the first word and after the last one: every word, the last included, is then
        # b" " + word + b" ", so whole-word anchors ("dan ") also match at the very end of the text.
        folded = (b" " + raw + b" ").translate(_WORD_TABLE)
        positions = self._anchor_positions(folded)
        low = ""
        for index, gate, literal in self._gated:
            for char in gate:
                if char in text:
                    break
            else:
                continue
            low = low or _lower(text)
            at = low.find(literal)
            while at >= 0:
                positions.setdefault(index, []).append(at)
                at = low.find(literal, at + 1)
        if not positions:
            return []
        low = low or _lower(text)
        n = len(text)
        hits: list[Hit] = []
        for index, anchors in positions.items():
            family = self.families[index]
            anchors.sort()
            if family.words is not None:
                self._word_hits(family, text, low, folded, anchors, hits)
            if family.punct is not None:
                self._punct_hits(family, text, low, anchors, n, hits)
        return hits

    def _anchor_positions(self, folded: bytes) -> dict[int, list[int]]:
        """Start offsets of the word anchors, by family: one pass over the folded bytes."""
        positions: dict[int, list[int]] = {}
        if self._gate_re2 is not None and self._gate_re2.search(folded) is None:
            return positions
        anchor_family = self._anchor_family
        for match in self._anchors.finditer(folded):
            # The match starts on the separator before the word: folded[i] stands for text[i - 1], so the
            # match's start is the word's offset in `text`.
            found = match.group()
            family = anchor_family.get(found)
            if family is None:  # a multi-word anchor with extra separators: "you  are now"
                family = anchor_family[b" " + b" ".join(found.split())]
            positions.setdefault(family, []).append(match.start())
        return positions

    def _word_hits(
        self, family: Family, text: str, low: str, folded: bytes, anchors: list[int], hits: list[Hit]
    ) -> None:
        """Try the word-start alternatives at every candidate word start up to `before` characters before
        each anchor (each candidate once)."""
        assert family.starts is not None
        # Windows [anchor - before, anchor + 1] merged into regions; `+ 8` lets the last candidate's prefix
        # be read in full (a candidate may then start just after the anchor: harmless, it is a real match).
        starts, by_prefix, before = family.starts, family.by_prefix, family.before
        regions: list[tuple[int, int]] = []
        for at in anchors:
            lo = at - before
            if regions and lo <= regions[-1][1]:
                regions[-1] = (regions[-1][0], at + 8)
            else:
                regions.append((max(lo, 0), at + 8))
        for lo, hi in regions:
            for candidate in starts.finditer(folded, lo, hi):
                match = by_prefix[candidate.group()].match(low, candidate.start())
                if match is not None:
                    self._add(family, match, text, low, hits)

    def _punct_hits(self, family: Family, text: str, low: str, anchors: list[int], n: int, hits: list[Hit]) -> None:
        """Search the punctuation-start alternatives in small merged windows around the anchors that have one
        of the family's punctuation characters just before them."""
        assert family.punct is not None
        region_start = region_end = -1
        for at in anchors:
            lo = max(0, at - family.punct_before)
            if family.punct_chars and text[lo:at].rstrip(" \t")[-1:] not in family.punct_chars:
                continue
            hi = min(n, at + family.after)
            if lo <= region_end:
                region_end = max(region_end, hi)
                continue
            if region_end >= 0:
                for match in family.punct.finditer(low, region_start, region_end):
                    self._add(family, match, text, low, hits)
            region_start, region_end = lo, hi
        if region_end >= 0:
            for match in family.punct.finditer(low, region_start, region_end):
                self._add(family, match, text, low, hits)

    @staticmethod
    def _add(family: Family, match: re.Match[str], text: str, low: str, hits: list[Hit]) -> None:
        name = match.lastgroup
        assert name is not None  # every alternative is a named group
        rule = family.rules[name]
        start, end = match.span()
        weight = weigh(rule, text, low, start, end)
        if weight > 0.0:
            hits.append((start, end, rule.signal, weight))

    def hits_unanchored(self, text: str) -> list[Hit]:
        """Every family's alternatives at every word start (and the punctuation ones everywhere), without the
        anchor pass: slow, for the tests that check that anchors, reaches and first words lose nothing."""
        low = _lower(text)
        folded = (b" " + text.encode("ascii", "replace") + b" ").translate(_WORD_TABLE)
        word_starts = [i for i in range(len(text)) if folded[i] == 32 and folded[i + 1] != 32]
        hits: list[Hit] = []
        for family in self.families:
            if family.words is not None:
                for start in word_starts:
                    match = family.words.match(low, start)
                    if match is not None:
                        self._add(family, match, text, low, hits)
            if family.punct is not None:
                for match in family.punct.finditer(low):
                    self._add(family, match, text, low, hits)
        return hits

