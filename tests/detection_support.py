"""Scoring a detector on a labelled corpus: shared by the pii and secrets detector tests and by
`loadtest/detection_quality.py`, which prints the same figures the tests assert."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

Case = tuple[str, tuple[str, ...]]


class Detector(Protocol):
    def find(self, text: str) -> Sequence[Any]: ...


def score(detector: Detector, corpus: Iterable[Case], kinds: Iterable[str]) -> dict[str, tuple[int, int, int]]:
    """(true positives, false positives, false negatives) per kind, counting kinds per text as multisets."""
    counts = {kind: [0, 0, 0] for kind in kinds}
    for text, expected in corpus:
        want = Counter(expected)
        got = Counter(finding.kind for finding in detector.find(text))
        for kind, tally in counts.items():
            tally[0] += min(want[kind], got[kind])
            tally[1] += max(0, got[kind] - want[kind])
            tally[2] += max(0, want[kind] - got[kind])
    return {kind: (tp, fp, fn) for kind, (tp, fp, fn) in counts.items()}


def mistakes(detector: Detector, corpus: Iterable[Case], kind: str) -> list[tuple[str, tuple[str, ...], list[str]]]:
    """The texts where the detector found a different number of `kind` than labelled (for the failure message)."""
    wrong = []
    for text, expected in corpus:
        got = [finding.kind for finding in detector.find(text)]
        if Counter(k for k in got if k == kind) != Counter(k for k in expected if k == kind):
            wrong.append((text, expected, got))
    return wrong
