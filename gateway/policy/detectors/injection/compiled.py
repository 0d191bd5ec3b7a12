"""The family tables compiled into the patterns the scan runs.

Per family: the union of its word-start alternatives (for the unanchored reference scan), the pass over
folded bytes that finds its candidate first words, the alternatives grouped by first-word prefix (a
candidate tries only those), and the union of its punctuation-start alternatives. `trie` and `anchor_key`
also build the anchor pass itself (`scan.Scanner`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from gateway.policy.detectors.injection.rules import Alt, FamilySpec, Rule

_SEP: Final = "\x00"  # in an anchor: one or more separators between two words


def anchor_key(anchor: str) -> str:
    """An anchor as the trie sees it: the spaces between its words become `_SEP` (so that "you  are now" with
    two separators, or "you **are** now", still matches), a leading or trailing space stays one literal
    separator ("dan " is the whole word "dan", not the start of "danger")."""
    lead = len(anchor) - len(anchor.lstrip(" "))
    trail = len(anchor) - len(anchor.rstrip(" "))
    return " " * lead + _SEP.join(anchor.split()) + " " * trail


# Letters by how often English words start with them (then the rest of the alphabet, digits, punctuation).
_LETTER_RANK: Final = {char: rank for rank, char in enumerate("tasowifcbrmphenludgyqkjvzx")}


def trie(words: Iterable[str]) -> str:
    """An alternation of `words` factored by common prefixes ("ign(?:or|ite)"): `re` tries alternatives one
    by one, so a shared first character is then compared once instead of once per word."""
    unique = sorted(set(words))
    if not unique:
        return "(?!)"
    if unique == [""]:
        return ""
    optional = "" in unique
    groups: dict[str, list[str]] = {}
    for word in unique:
        if word:
            groups.setdefault(word[0], []).append(word[1:])
    # Most frequent word-initial letters first: `re` tries the alternatives in order.
    ordered = sorted(groups.items(), key=lambda item: _LETTER_RANK.get(item[0], len(_LETTER_RANK)))
    parts = [(" +" if first == _SEP else re.escape(first)) + trie(rests) for first, rests in ordered]
    body = parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"
    if optional:
        return "(?:" + body + ")?"
    return body


def _minimal_prefixes(starts: Iterable[str], length: int = 4) -> list[str]:
    """The distinct prefixes (at most `length` characters, ASCII only) such that every start begins with one:
    enough for the candidate pass to reject other words after a comparison or two."""
    prefixes = set()
    for start in starts:
        cut = start[:length]
        for i, char in enumerate(cut):
            if not ("a" <= char <= "z" or "0" <= char <= "9"):
                cut = cut[:i]
                break
        if not cut:
            raise ValueError(f"a start must begin with an ASCII letter or digit: {start!r}")
        prefixes.add(cut)
    return [p for p in prefixes if not any(p != q and p.startswith(q) for q in prefixes)]


@dataclass(frozen=True, slots=True)
class Family:
    """A compiled `FamilySpec`."""

    name: str
    before: int
    punct_before: int
    after: int
    punct_chars: str
    gated: tuple[tuple[str, str], ...]
    words: re.Pattern[str] | None  # all word-start alternatives (the unanchored reference scan uses it)
    starts: re.Pattern[bytes] | None  # b" " + first-word prefixes, over the folded bytes: the candidates
    by_prefix: dict[bytes, re.Pattern[str]]  # candidate prefix -> only the alternatives that can start with it
    punct: re.Pattern[str] | None  # punctuation-start alternatives, searched in a small window
    rules: dict[str, Rule]


def compile_family(spec: FamilySpec) -> Family:
    """`spec` compiled: its alternatives split by how they start, the candidate pass over their first words."""
    word_alts = [alt for alt in spec.alts if alt.starts]
    punct_alts = [alt for alt in spec.alts if not alt.starts]

    def union(alts: list[Alt]) -> re.Pattern[str] | None:
        if not alts:
            return None
        return re.compile("|".join(f"(?P<{alt.name}>{alt.pattern})" for alt in alts))

    starts = None
    by_prefix: dict[bytes, re.Pattern[str]] = {}
    if word_alts:
        prefixes = _minimal_prefixes(start for alt in word_alts for start in alt.starts)
        firsts = re.escape("".join(sorted({prefix[0] for prefix in prefixes})))
        starts = re.compile((" (?=[" + firsts + "])" + trie(prefixes)).encode("ascii"))
        for prefix in prefixes:
            # A candidate whose first word begins with `prefix` can only start the alternatives listing a start
            # that begins with `prefix` (or that `prefix` begins with: "no" stands for "not" and "nor").
            group = [
                alt
                for alt in word_alts
                if any(start.startswith(prefix) or prefix.startswith(start[: len(prefix)]) for start in alt.starts)
            ]
            by_prefix[(" " + prefix).encode("ascii")] = union(group) or re.compile("(?!)")
    return Family(
        spec.name,
        spec.before,
        spec.punct_before,
        spec.after,
        spec.punct_chars,
        spec.gated,
        union(word_alts),
        starts,
        by_prefix,
        union(punct_alts),
        {alt.name: alt.rule for alt in spec.alts},
    )
