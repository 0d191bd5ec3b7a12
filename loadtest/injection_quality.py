"""Precision and recall of the built-in `prompt_injection` scorer on the labelled corpus, with a threshold sweep.

The corpus lives with the tests (`tests/policy/detectors/test_injection_detector.py`: module-level lists
`ATTACKS` and `HARD_NEGATIVES`); this script loads that module from its file, so the figures are exactly
what the tests assert. An attack counts as found when its score reaches the threshold; a hard negative
(prose about injection, self-corrections, code that says "system", role-play, plain base64...) counts as a
false positive when it does.

    python loadtest/injection_quality.py                  # sweep 0.3 .. 0.95, details at 0.8
    python loadtest/injection_quality.py --threshold 0.7  # details (misses, false positives) at 0.7
    python loadtest/injection_quality.py --scores         # every text with its score and signals
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "policy" / "detectors" / "test_injection_detector.py"
sys.path.insert(0, str(REPO))

from gateway.policy.detectors.injection import InjectionScorer  # noqa: E402


def load() -> ModuleType:
    """The test module by file path: tests/ has no packages, and importing it must not need pytest's rootdir."""
    spec = importlib.util.spec_from_file_location("test_injection_detector", CORPUS)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {CORPUS}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def short(text: str, width: int = 90) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threshold", type=float, default=0.8, help="threshold for the details (default 0.8)")
    parser.add_argument("--scores", action="store_true", help="print every text with its score")
    args = parser.parse_args()

    corpus = load()
    attacks: list[str] = corpus.ATTACKS
    negatives: list[str] = corpus.HARD_NEGATIVES
    scorer = InjectionScorer()
    attack_scores = [scorer.assess(text) for text in attacks]
    negative_scores = [scorer.assess(text) for text in negatives]

    print(f"corpus: {len(attacks)} attacks, {len(negatives)} hard negatives")
    print(f"{'threshold':>9} {'TP':>4} {'FP':>4} {'FN':>4} {'precision':>10} {'recall':>7}")
    for step in range(30, 100, 5):
        threshold = step / 100
        tp = sum(a.score >= threshold for a in attack_scores)
        fp = sum(a.score >= threshold for a in negative_scores)
        fn = len(attacks) - tp
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / len(attacks)
        marker = "  <- default" if step == 80 else ""
        print(f"{threshold:>9.2f} {tp:>4} {fp:>4} {fn:>4} {precision:>10.3f} {recall:>7.3f}{marker}")

    threshold = args.threshold
    print(f"\nat threshold {threshold}:")
    missed = [(a, text) for a, text in zip(attack_scores, attacks) if a.score < threshold]
    wrong = [(a, text) for a, text in zip(negative_scores, negatives) if a.score >= threshold]
    print(f"  missed attacks: {len(missed)}")
    for assessment, text in missed:
        print(f"    {assessment.score:.2f} {','.join(assessment.signals) or '-':<40} {short(text)}")
    print(f"  false positives: {len(wrong)}")
    for assessment, text in wrong:
        print(f"    {assessment.score:.2f} {','.join(assessment.signals) or '-':<40} {short(text)}")
    closest = sorted(zip(negative_scores, negatives), key=lambda pair: -pair[0].score)[:5]
    print("  highest-scoring hard negatives (the margin under the threshold):")
    for assessment, text in closest:
        print(f"    {assessment.score:.2f} {','.join(assessment.signals) or '-':<40} {short(text)}")
    lowest = sorted(zip(attack_scores, attacks), key=lambda pair: pair[0].score)[:5]
    print("  lowest-scoring attacks (the margin over the threshold):")
    for assessment, text in lowest:
        print(f"    {assessment.score:.2f} {','.join(assessment.signals) or '-':<40} {short(text)}")

    if args.scores:
        print("\nattacks:")
        for assessment, text in zip(attack_scores, attacks):
            print(f"  {assessment.score:.2f} {','.join(assessment.signals) or '-':<40} {short(text)}")
        print("hard negatives:")
        for assessment, text in zip(negative_scores, negatives):
            print(f"  {assessment.score:.2f} {','.join(assessment.signals) or '-':<40} {short(text)}")


if __name__ == "__main__":
    main()
