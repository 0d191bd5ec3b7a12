"""Staged rollouts: a rule monitored until an instant, then enforced for a share of requests, then for all.

A policy file says `mode: monitor` with `until: <RFC 3339 time>`, and/or `rollout: {percent: N}`; the
loader folds the policy's and the rule's settings into one `Stage` per staged rule, once per load. Per
exchange the stage then costs one float comparison (the exchange's own start time against `until`, so both
phases of one exchange see the same step) and, for rollout rules only, one BLAKE2b of `rule id:request id`.
The hash is the same in every worker and instance (unlike Python's salted `hash()`), so a request id is
always on the same side of a rollout, and whoever has the audit record can recompute which side that is:
`printf '%s' 'RULE_ID:REQUEST_ID' | b2sum -l 64` gives the 64-bit position; it is enforced when the
position is below `percent` % of 2**64. Rules without `until` or `rollout` have no stage and pay nothing.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any

from gateway.exchange import Exchange

# The `step` a staged rule's audit decision records (plain rules record none).
MONITOR_UNTIL = "monitor_until"  # before `until`: monitored (would_<action>)
ROLLOUT = "rollout"  # in the percentage rollout: `mode` says which side this request id fell on
ENFORCE = "enforce"  # `until` has passed and there is no rollout: enforced, the schedule is done

_SPACE = 2**64  # rollout positions are 64-bit
# RFC 3339 date-time: date, time and a zone, always; `fromisoformat` alone would also take ISO's
# basic formats and local (naive) times, which mean a different instant on every machine.
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")

# Constant (mode, step) pairs: a staged rule's per-exchange answer allocates nothing.
_MONITORING = ("monitor", MONITOR_UNTIL)
_ENFORCING = ("enforce", ENFORCE)
_ROLLED_IN = ("enforce", ROLLOUT)
_ROLLED_OUT = ("monitor", ROLLOUT)


def parse_instant(text: Any) -> float:
    """An RFC 3339 time with its zone (`2025-07-01T00:00:00Z`) as unix seconds; ValueError otherwise."""
    if not isinstance(text, str) or not RFC3339.fullmatch(text.strip()):
        raise ValueError(f"must be an RFC 3339 time with a time zone, e.g. 2025-07-01T00:00:00Z (got {text!r})")
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"is not a valid time: {exc} (got {text!r})") from None
    return moment.timestamp()


def format_instant(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def rollout_position(rule_id: str, request_id: str) -> int:
    """Where a request id falls in a rule's rollout, 0 <= position < 2**64 (see the module docstring).

    Keyed by the rule id too, so two rules at 10% enforce on independent 10% samples, not the same one.
    """
    return int.from_bytes(blake2b(f"{rule_id}:{request_id}".encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True)
class Stage:
    """A staged rule's schedule: monitored before `until`, then enforced for `percent` % of request ids
    (all of them without a rollout). Either may be None, not both."""

    until: float | None = None  # unix seconds
    percent: float | None = None
    threshold: int = field(init=False, repr=False, compare=False)  # positions below it are enforced

    def __post_init__(self) -> None:
        percent = 100.0 if self.percent is None else self.percent
        object.__setattr__(self, "threshold", round(percent / 100 * _SPACE))

    def at(self, rule_id: str, exchange: Exchange) -> tuple[str, str]:
        """This exchange's (mode, step) for the rule: by the exchange's start time and its request id."""
        if self.until is not None and exchange.ts < self.until:
            return _MONITORING
        if self.percent is None:
            return _ENFORCING
        return _ROLLED_IN if rollout_position(rule_id, exchange.request_id) < self.threshold else _ROLLED_OUT

    def describe(self) -> str:
        """One line for people (explain, admin): `monitor until 2025-07-01T00:00:00Z, then rollout 10%`."""
        parts = []
        if self.until is not None:
            parts.append(f"monitor until {format_instant(self.until)}")
        parts.append(f"rollout {self.percent:g}%" if self.percent is not None else "enforce")
        return ", then ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "until": format_instant(self.until) if self.until is not None else None,
            "rollout_percent": self.percent,
        }
