"""Precision and recall of the built-in `pii` and `secrets` detectors, per entity or kind, on the labelled corpora.

The corpora live with the tests (`tests/policy/detectors/test_pii_detector.py` and
`test_secrets_detector.py`: module-level lists of (text, expected kinds)); this script loads those modules
from their files and uses their own `precision_recall`, so the table shows exactly what the tests assert.
A case's expected kinds are a multiset; a finding of the right kind counts once per expected occurrence.

    python loadtest/detection_quality.py                   # with google-re2 when installed
    python loadtest/detection_quality.py --engine stdlib   # the fallback gate: the table must not change
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
CORPORA = REPO / "tests" / "policy" / "detectors"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the corpora's modules import tests/detection_support.py

from gateway.policy.detectors import pii  # noqa: E402


def load(name: str) -> ModuleType:
    """A test module by file path: tests/ has no packages, and importing it must not need pytest's rootdir."""
    spec = importlib.util.spec_from_file_location(name, CORPORA / f"{name}.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {CORPORA / name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table(title: str, module: ModuleType, cases_by_kind: dict[str, list[tuple[str, tuple[str, ...]]]]) -> bool:
    detector = module.make_detector()
    scores: dict[str, tuple[int, int, int]] = module.precision_recall(detector, module.CORPUS)
    print(f"\n{title}: {len(module.CORPUS)} texts")
    print(f"{'kind':<16} {'positives':>9} {'hard neg.':>9} {'TP':>4} {'FP':>4} {'FN':>4} {'precision':>10} {'recall':>7}")
    perfect = True
    for kind, (tp, fp, fn) in scores.items():
        cases = cases_by_kind[kind]
        positives = sum(kind in expected for _, expected in cases)
        negatives = len(cases) - positives
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        perfect = perfect and fp == 0 and fn == 0
        print(f"{kind:<16} {positives:>9} {negatives:>9} {tp:>4} {fp:>4} {fn:>4} {precision:>10.3f} {recall:>7.3f}")
    return perfect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=("re2", "stdlib"), default="re2", help="gate engine (default re2)")
    args = parser.parse_args()
    if args.engine == "stdlib":
        pii._re2 = None
    elif pii._re2 is None:
        parser.error("google-re2 is not installed: pip install google-re2, or use --engine stdlib")
    print(f"engine: {args.engine}")
    pii_tests = load("test_pii_detector")
    secrets_tests = load("test_secrets_detector")
    ok = table("PII (PiiDetector)", pii_tests, pii_tests.CASES_BY_ENTITY)
    ok = table("Secrets (SecretsDetector)", secrets_tests, secrets_tests.CASES_BY_KIND) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
