"""Window scoring: the weighed matches of a text combined into its score, its signals and where they are.

The weights of the distinct signals whose matches start inside one window combine as `1 - prod(1 - w)`,
only the strongest match of each signal counting; the text's score is the best window's. Computed from the
match positions alone: the text is never rescanned per window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

Hit = tuple[int, int, str, float]  # (start, end, signal, weight)


@dataclass(frozen=True, slots=True)
class InjectionAssessment:
    """How much `text` looks like a prompt injection, and why.

    `score` (0..1) is the best window's; `signals` names the heuristics that fired in that window, strongest
    first; `text[start:end]` is that window (widened to the end of a match that started inside it and ran
    past it). Nothing fired: score 0.0, no signals, an empty span at 0."""

    score: float
    signals: tuple[str, ...]
    start: int
    end: int


NOTHING: Final = InjectionAssessment(0.0, (), 0, 0)


def best_window(hits: list[Hit], n: int, window: int, step: int) -> InjectionAssessment:
    """Max over windows of the combined weights of the distinct signals whose matches start inside.

    `hits` is not empty; windows of `window` characters start every `step` characters and cover `n`."""
    if n <= window:  # one window: the whole text
        best: dict[str, float] = {}
        for _, _, signal, weight in hits:
            if weight > best.get(signal, 0.0):
                best[signal] = weight
        remaining = 1.0
        for weight in best.values():
            remaining *= 1.0 - weight
        ordered = tuple(sorted(best, key=lambda s: (-best[s], s)))
        return InjectionAssessment(round(1.0 - remaining, 6), ordered, 0, n)
    last = -(-(n - window) // step)
    per_window: dict[int, dict[str, float]] = {}
    reach: dict[int, int] = {}
    for start, end, signal, weight in hits:
        first = max(0, (start - window) // step + 1)
        for k in range(first, min(start // step, last) + 1):
            signals = per_window.setdefault(k, {})
            if weight > signals.get(signal, 0.0):
                signals[signal] = weight
            if end > reach.get(k, 0):
                reach[k] = end
    best_k, best_score = -1, -1.0
    for k in sorted(per_window):
        remaining = 1.0
        for weight in per_window[k].values():
            remaining *= 1.0 - weight
        score = round(1.0 - remaining, 6)
        if score > best_score:
            best_k, best_score = k, score
    signals = per_window[best_k]
    named = tuple(sorted(signals, key=lambda s: (-signals[s], s)))
    start = best_k * step
    end = max(min(start + window, n), reach[best_k])
    return InjectionAssessment(best_score, named, start, end)
