"""The shape of the family tables: a weight rule (`Rule`), an alternative (`Alt`), a family (`FamilySpec`).

The tables themselves are in `overrides` and `personas`; `weights.weigh` applies the rules and `compiled`
turns the specs into patterns. Kept apart so that both sides read the same definitions.
"""

from __future__ import annotations

from dataclasses import dataclass

# Weight rules ("kinds"): how a match's weight is decided.
FIXED = 0  # always `strong`
IMPERATIVE_KIND = 1  # `strong` when addressed to the model, else `weak`
OVERRIDE = 2  # self-correction 0.3; strong when imperative, with a strong qualifier and not defensive
EXFIL = 3  # imperative + your/hidden/... 0.85; "the system prompt" 0.6; otherwise weak
EXFIL_Q = 4  # "what is your (hidden) system prompt"
PERSONA_TAIL = 5  # "you are now" / "from now on": strong with a jailbreak persona word, else weak
DEV_MODE = 6
DAN = 7  # strong unless the original text writes "Dan", a person's name
SEND = 8  # sensitive data (conversation, keys, system prompt) sent out: strong when imperative


@dataclass(frozen=True, slots=True)
class Rule:
    """How the weight of one alternative's match is decided, and for which signal."""

    signal: str
    kind: int
    strong: float
    weak: float = 0.0


@dataclass(frozen=True, slots=True)
class Alt:
    """One alternative of a family. `starts` lists lower-case ASCII prefixes that every match of a word-start
    alternative begins with (its first words: the verbs of "reveal ... system prompt"); an empty tuple marks an
    alternative that begins with punctuation ("<|im_start|>", "</system>", "### system")."""

    name: str
    pattern: str
    rule: Rule
    starts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FamilySpec:
    """Patterns that share anchors. A match must contain one of the anchors; a word-start match begins at most
    `before` characters before it, a punctuation-start match at most `punct_before` before it and ends at most
    `after` after it. The tests check these reaches against the longest text each pattern can match, and the
    whole scheme against an unanchored scan of the corpus."""

    name: str
    anchors: tuple[str, ...]  # word prefixes found at word starts by the anchor pass ("ignor", "dan ")
    # (gate characters, literal): the literal is looked for in the lower-cased text with str.find, and only
    # when one of the gate characters (rare in prose: "<", "@", "#") occurs in the text at all.
    gated: tuple[tuple[str, str], ...]
    before: int
    alts: tuple[Alt, ...]
    punct_before: int = 0
    after: int = 0
    # A punctuation window is searched only when the last non-blank character before the anchor is one of
    # these ("<" of "<system>", "#" of "### system"); empty: always (the anchor is the punctuation itself).
    punct_chars: str = ""

