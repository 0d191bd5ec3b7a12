"""`pii`, `secrets` and `prompt_injection`: the built-in detectors, configured by a policy rule."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from gateway.policy.checks.base import Hit, SpanCheck, Subject, TextCheck
from gateway.policy.detectors import Finding
from gateway.policy.detectors.injection import InjectionScorer
from gateway.policy.detectors.pii import PII_ENTITIES, PiiDetector
from gateway.policy.detectors.secrets import SECRET_KINDS, SecretsDetector

if TYPE_CHECKING:
    from gateway.config.reader import Section
    from gateway.policy.bundle import Bundle


def _names(options: Section, key: str, known: tuple[str, ...]) -> list[str] | None:
    names = options.sequence(key, None)
    if names is None:
        return None
    if not names or not all(isinstance(name, str) for name in names):
        options.fail(key, "must be a non-empty list of names")
    unknown = [name for name in names if name not in known]
    if unknown:
        options.fail(key, f"unknown {unknown[0]!r}; known: {', '.join(known)}")
    return list(names)


class PiiCheck(SpanCheck):
    kind = "pii"
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"entities": {"type": "array", "items": {"enum": list(PII_ENTITIES)}, "minItems": 1}},
    }

    def __init__(self, detector: PiiDetector) -> None:
        self._detector = detector

    @classmethod
    def build(cls, options: Section, bundle: Bundle) -> PiiCheck:
        entities = _names(options, "entities", PII_ENTITIES)
        options.finish()
        return cls(PiiDetector(entities))

    def find(self, text: str) -> list[Finding]:
        return self._detector.find(text)


class SecretsCheck(SpanCheck):
    kind = "secrets"
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"kinds": {"type": "array", "items": {"enum": list(SECRET_KINDS)}, "minItems": 1}},
    }

    def __init__(self, detector: SecretsDetector) -> None:
        self._detector = detector

    @classmethod
    def build(cls, options: Section, bundle: Bundle) -> SecretsCheck:
        kinds = _names(options, "kinds", SECRET_KINDS)
        options.finish()
        return cls(SecretsDetector(kinds))

    def find(self, text: str) -> list[Finding]:
        return self._detector.find(text)


class PromptInjectionCheck(TextCheck):
    """Scores the whole input (every part, joined) with overlapping windows; fires at the threshold."""

    kind = "prompt_injection"
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"threshold": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.8}},
    }

    def __init__(self, scorer: InjectionScorer) -> None:
        self._scorer = scorer

    @classmethod
    def build(cls, options: Section, bundle: Bundle) -> PromptInjectionCheck:
        # The scorer refuses 0 (a score of 0 means nothing was found: every text would fire); refused here
        # first, so that a policy load reports `file:line: key` instead of crashing on its ValueError.
        threshold = options.number("threshold", 0.8, minimum=-math.inf)
        if not 0 < threshold <= 1:
            options.fail("threshold", f"must be greater than 0 and at most 1 (got {threshold})")
        options.finish()
        return cls(InjectionScorer(threshold=threshold))

    def inspect(self, subject: Subject) -> Hit | None:
        assessment = self._scorer.assess(subject.text)
        if assessment.score < self._scorer.threshold:
            return None
        return Hit(f"score {assessment.score:.2f}: {', '.join(assessment.signals)}")
