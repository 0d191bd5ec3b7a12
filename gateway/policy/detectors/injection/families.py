"""Every family, in scan order: the tables of `overrides` and `personas` end to end.

Each entry: `FamilySpec(name, word anchors, gated literals, before, alternatives[, punct_before, after,
punct_chars])`. Weights: `Rule(signal, kind, strong[, weak])`; see `weights.weigh` for what each kind does.
A family's index in `FAMILIES` is its index in the compiled scan.
"""

from __future__ import annotations

from typing import Final

from gateway.policy.detectors.injection.overrides import OVERRIDE_FAMILIES
from gateway.policy.detectors.injection.personas import PERSONA_FAMILIES
from gateway.policy.detectors.injection.rules import FamilySpec

FAMILIES: Final[tuple[FamilySpec, ...]] = (*OVERRIDE_FAMILIES, *PERSONA_FAMILIES)
