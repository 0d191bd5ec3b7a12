"""Built-in detectors: the vetted pattern sets behind the `pii`, `secrets` and `prompt_injection` checks.

Each detector is built once per policy load (patterns compiled, options frozen) and then called on the hot
path with text that is already normalised (NFKC, invisible characters removed; see `gateway.policy.text`).
A detector only finds; what happens to a finding (block, redact, flag) is the rule's action.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected span of the scanned text: `text[start:end]` is the match, `kind` what it is
    (an entity such as `EMAIL`, or a secret kind such as `AWS_ACCESS_KEY`)."""

    kind: str
    start: int
    end: int
