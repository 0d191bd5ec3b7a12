"""`InjectionScorer`: the `prompt_injection` check's detector, built once per policy load.

It validates its options and ties the passes together: the anchored scan (`scan`), the base64 pass
(`encoded`, which scores decoded text with this same scorer), and the window scoring (`scoring`).
"""

from __future__ import annotations

import math
from typing import Final

from gateway.policy.detectors import Finding
from gateway.policy.detectors.injection.encoded import encoded_hits
from gateway.policy.detectors.injection.scan import Scanner
from gateway.policy.detectors.injection.scoring import NOTHING, InjectionAssessment, best_window
from gateway.policy.detectors.injection.signals import KIND

_MIN_WINDOW: Final = 64


class InjectionScorer:
    """Scores text for prompt injection; see the package docstring for the method and its limits.

    Build once (the patterns are compiled then), call from any thread: `assess` and `find` keep no state."""

    __slots__ = ("threshold", "window", "overlap", "_step", "_scan")

    def __init__(self, threshold: float = 0.8, window: int = 512, overlap: int = 128) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise ValueError(f"prompt_injection threshold must be a number between 0 and 1, got {threshold!r}")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(
                "prompt_injection threshold must be in (0, 1]: a score of 0 means nothing was found, so a "
                f"threshold of 0 would flag every text; got {threshold!r}"
            )
        if isinstance(window, bool) or not isinstance(window, int) or window < _MIN_WINDOW:
            raise ValueError(
                f"prompt_injection window must be an integer of at least {_MIN_WINDOW} characters "
                f"(the length of a typical signal phrase), got {window!r}"
            )
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < window:
            raise ValueError(
                f"prompt_injection overlap must be an integer with 0 <= overlap < window ({window}), got {overlap!r}"
            )
        self.threshold = float(threshold)
        self.window = window
        self.overlap = overlap
        self._step = window - overlap
        self._scan = Scanner()  # the compiled families and the anchor pass

    # -- public API -----------------------------------------------------------------------------------------

    def assess(self, text: str) -> InjectionAssessment:
        """The score of the whole `text` (its best window), the signals that fired there, and where."""
        return self._assess(text, 0)

    def find(self, text: str) -> list[Finding]:
        """`[Finding("PROMPT_INJECTION", start, end)]` over the best window when its score reaches the
        threshold, else `[]`."""
        assessment = self.assess(text)
        if assessment.score >= self.threshold:
            return [Finding(KIND, assessment.start, assessment.end)]
        return []

    # -- internals ------------------------------------------------------------------------------------------

    def _assess(self, text: str, depth: int) -> InjectionAssessment:
        if not text:
            return NOTHING
        raw = text.encode("ascii", "replace")  # one byte per character: byte offsets are character offsets
        hits = self._scan.hits(text, raw)
        hits.extend(encoded_hits(text, raw, depth, self._assess))
        if not hits:
            return NOTHING
        return best_window(hits, len(text), self.window, self._step)
