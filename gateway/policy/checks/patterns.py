"""`regex` and `keywords`: the security team's own patterns, in RE2 syntax.

RE2 (google-re2) matches in time linear in the input whatever the pattern, so a policy author cannot
write a pattern that an adversarial prompt turns into a catastrophic backtrack on the event loop. The
price is RE2's syntax: no lookaround and no backreferences; such a pattern is refused at load time with
its file and line. The compiler also gathers every rule's pattern into one `re2.Set`, so a thousand
rules still cost one pass over clean text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import re2

from gateway.policy.checks.base import SpanCheck
from gateway.policy.detectors import Finding

if TYPE_CHECKING:
    from gateway.config.reader import Section
    from gateway.policy.bundle import Bundle


def compile_pattern(options: Section, key: str, pattern: str) -> Any:
    try:
        return re2.compile(pattern)
    except re2.error as exc:
        options.fail(key, f"not a valid RE2 pattern ({exc}); RE2 has no lookaround or backreferences")


def _label(options: Section, default: str) -> str:
    label: str = options.string("label", default)
    if not label.replace("_", "").isalnum() or not label.isupper():
        options.fail("label", f"must be UPPER_SNAKE_CASE, it names redaction placeholders (got {label!r})")
    return label


class PatternCheck(SpanCheck):
    """Shared by regex and keywords: one combined RE2 pattern, found span by span."""

    def __init__(self, pattern: str, compiled: Any, label: str) -> None:
        self._pattern = pattern
        self._compiled = compiled
        self.label = label

    @property
    def patterns(self) -> tuple[str, ...]:
        return (self._pattern,)

    def find(self, text: str) -> list[Finding]:
        label = self.label
        return [Finding(label, *match.span()) for match in self._compiled.finditer(text) if match.end() > match.start()]


class RegexCheck(PatternCheck):
    kind = "regex"
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "pattern": {"type": "string", "description": "An RE2 pattern (no lookaround or backreferences)."},
            "patterns": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "ignore_case": {"type": "boolean", "default": False},
            "label": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$", "default": "MATCH"},
        },
        "oneOf": [{"required": ["pattern"]}, {"required": ["patterns"]}],
    }

    @classmethod
    def build(cls, options: Section, bundle: Bundle) -> RegexCheck:
        if options.has("pattern") == options.has("patterns"):
            options.fail(None, "needs exactly one of pattern or patterns")
        if options.has("pattern"):
            sources = [("pattern", options.string("pattern"))]
        else:
            entries = options.sequence("patterns")
            if not entries or not all(isinstance(entry, str) for entry in entries):
                options.fail("patterns", "must be a non-empty list of strings")
            sources = [("patterns", entry) for entry in entries]
        ignore_case = options.boolean("ignore_case", False)
        label = _label(options, "MATCH")
        options.finish()
        for key, source in sources:
            compile_pattern(options, key, source)  # each on its own, so the error names the bad one
        combined = "|".join(f"(?:{source})" for _, source in sources)
        if ignore_case:
            combined = f"(?i:{combined})"
        if re2.compile(combined).search(""):
            options.fail(sources[0][0], "matches the empty string, so it would fire on every request")
        return cls(combined, compile_pattern(options, sources[0][0], combined), label)


class KeywordsCheck(PatternCheck):
    kind = "keywords"
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["words"],
        "properties": {
            "words": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
            "case_sensitive": {"type": "boolean", "default": False},
            "whole_words": {"type": "boolean", "default": True},
            "label": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$", "default": "KEYWORD"},
        },
    }

    @classmethod
    def build(cls, options: Section, bundle: Bundle) -> KeywordsCheck:
        words = options.sequence("words")
        if not words or not all(isinstance(word, str) and word.strip() for word in words):
            options.fail("words", "must be a non-empty list of non-empty strings")
        case_sensitive = options.boolean("case_sensitive", False)
        whole_words = options.boolean("whole_words", True)
        label = _label(options, "KEYWORD")
        options.finish()
        # Longest first, so `pass` never shadows `password` at the same position.
        alternatives = "|".join(re2.escape(word.strip()) for word in sorted(set(words), key=len, reverse=True))
        combined = rf"\b(?:{alternatives})\b" if whole_words else f"(?:{alternatives})"
        if not case_sensitive:
            combined = f"(?i:{combined})"
        return cls(combined, compile_pattern(options, "words", combined), label)
