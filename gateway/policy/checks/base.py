"""What every check is: built once from its policy-file options, then asked about one exchange at a time.

A check only answers "does this rule fire, and where?"; the rule's action decides what happens. Checks
come in four shapes, told apart by the class they derive from:

- `SpanCheck` finds spans in each text part (regex, keywords, pii, secrets): these can redact, and
  run incrementally over streamed replies.
- `TextCheck` judges the request's or reply's text as a whole (prompt_injection, json_schema).
- `ExchangeCheck` judges the exchange's shape, not its text (limits, models).
- `RemoteCheck` asks something outside the process (webhook); the only kind that awaits.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from gateway.policy.detectors import Finding
from gateway.policy.text import TextPart

if TYPE_CHECKING:
    from aiohttp import ClientSession

    from gateway.config.reader import Section
    from gateway.exchange import Exchange
    from gateway.policy.bundle import Bundle


@dataclass(slots=True)
class Subject:
    """What one phase of one exchange offers to the checks (built once per phase, shared by all rules)."""

    phase: str
    exchange: Exchange
    parts: list[TextPart]
    reply: dict[str, Any] | None = None
    http: ClientSession | None = None  # for remote checks: the worker's pooled client session
    _joined: str | None = None

    @property
    def text(self) -> str:
        """All parts joined by newlines, for checks that judge the text as a whole."""
        if self._joined is None:
            self._joined = "\n".join([part.text for part in self.parts])
        return self._joined


@dataclass(slots=True)
class Hit:
    """A check fired: `detail` says why (kinds and counts, never the matched text, since it goes to
    audit); `spans` are (part index, finding) pairs when the check can point at text."""

    detail: str
    spans: list[tuple[int, Finding]] = field(default_factory=list)


class Check:
    kind: ClassVar[str]
    options_schema: ClassVar[dict[str, Any]]  # JSON Schema of the options (for `gateway policy schema`)
    phases: ClassVar[frozenset[str]] = frozenset({"request", "response"})
    redacts: ClassVar[bool] = False  # can point at spans to replace
    needs_whole_reply: ClassVar[bool] = False  # on a stream, only with `stream: buffer`
    remote: ClassVar[bool] = False  # awaited via `inspect_remote`
    first: ClassVar[bool] = False  # size and shape limits: run before everything and always fail closed

    @classmethod
    def build(cls, options: Section, bundle: Bundle) -> Check:
        """Validate `options` (the mapping under the check's name) and compile what can be compiled."""
        raise NotImplementedError

    def inspect(self, subject: Subject) -> Hit | None:
        raise NotImplementedError

    async def inspect_remote(self, subject: Subject) -> Hit | None:
        raise NotImplementedError

    @property
    def patterns(self) -> tuple[str, ...]:
        """RE2 patterns that must match somewhere for this check to fire (for the shared prefilter), or ()."""
        return ()


class SpanCheck(Check):
    redacts = True

    def find(self, text: str) -> list[Finding]:
        raise NotImplementedError

    def inspect(self, subject: Subject) -> Hit | None:
        spans = [(index, finding) for index, part in enumerate(subject.parts) for finding in self.find(part.text)]
        return Hit(describe(finding for _, finding in spans), spans) if spans else None


class TextCheck(Check):
    """Judges a phase's text as a whole (`subject.text`); cannot point at spans, so cannot redact."""


class ExchangeCheck(Check):
    """Judges the exchange's shape (sizes, counts, parameters, model), not its text."""


class RemoteCheck(Check):
    remote = True

    def inspect(self, subject: Subject) -> Hit | None:  # never called: remote checks are awaited
        raise TypeError(f"{self.kind} checks are remote; use inspect_remote")


def describe(findings: Any) -> str:
    """`EMAIL x2, PHONE x1`: what was found, for audit and logs, without the text itself."""
    counts = Counter(finding.kind for finding in findings)
    return ", ".join(f"{kind} x{count}" for kind, count in sorted(counts.items()))
