"""One phase of one exchange being judged: rules run, hits collected, one verdict concluded.

Shared by the request phase, the response phase and the stream guard, so that all three record
decisions, count errors and pick the winning action the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.exchange import Decision, Exchange
from gateway.metrics import Metrics
from gateway.policy.checks import Hit, Subject
from gateway.policy.engine import ALLOW, Verdict
from gateway.policy.model import SEVERITY, Rule
from gateway.policy.redaction import Redactions

if TYPE_CHECKING:
    from gateway.policy.text import TextPart

log = logging.getLogger(__name__)

Applies = Callable[[Rule], bool]


def everything(rule: Rule) -> bool:
    return True


class Evaluation:
    __slots__ = ("phase", "exchange", "metrics", "applies", "best", "redacting", "_recorded")

    def __init__(self, phase: str, exchange: Exchange, metrics: Metrics, applies: Applies) -> None:
        self.phase = phase
        self.exchange = exchange
        self.metrics = metrics
        self.applies = applies
        self.best = ALLOW
        self.redacting: list[tuple[Rule, Hit]] = []  # enforced redact hits, applied by `redact()`
        self._recorded: set[str] = set()

    @property
    def blocked(self) -> bool:
        return self.best.action == "block"

    def run(self, rule: Rule, subject: Subject) -> Hit | None:
        """Inspect with one rule (when it applies): timing, error handling and recording included."""
        if not self.applies(rule):
            return None
        started = time.perf_counter()
        try:
            hit = rule.check.inspect(subject)
        except Exception as exc:  # noqa: BLE001 - any check failure is a decision: on_error says which
            self.failed(rule, exc, started)
            return None
        if hit is not None:
            self.fired(rule, hit, started)
        return hit

    async def run_remote(self, rule: Rule, subject: Subject) -> None:
        if not self.applies(rule):
            return
        started = time.perf_counter()
        try:
            hit = await rule.check.inspect_remote(subject)
        except Exception as exc:  # noqa: BLE001 - as in run()
            self.failed(rule, exc, started)
            return
        if hit is not None:
            self.fired(rule, hit, started)

    def fired(self, rule: Rule, hit: Hit, started: float) -> None:
        mode, step = rule.mode_for(self.exchange)  # staged rules: decided per exchange, only once fired
        if mode == "enforce":
            self._raise_to(rule.action, rule)
            if rule.action == "redact":
                self.redacting.append((rule, hit))
        verdict = rule.action if mode == "enforce" else f"would_{rule.action}"
        self._record(rule, rule.action, verdict, mode, step, hit.detail, started)

    def failed(self, rule: Rule, error: Exception, started: float) -> None:
        detail = f"check failed: {type(error).__name__}: {error}"[:300]
        log.warning("policy %s rule %s: %s (on_error: %s)", rule.policy, rule.id, detail, rule.on_error)
        self.metrics.policy_check_error(rule.policy, rule.id, rule.on_error)
        mode, step = rule.mode_for(self.exchange)
        if mode != "enforce":
            self._record(rule, rule.action, "error", mode, step, detail, started)
        elif rule.on_error == "closed":
            self._raise_to("block", rule)
            self._record(rule, "block", "error", mode, step, detail, started)
        else:
            self.exchange.degraded = True
            self._record(rule, rule.action, "error_open", mode, step, detail, started)

    def _raise_to(self, action: str, rule: Rule) -> None:
        if SEVERITY[action] > SEVERITY[self.best.action]:
            self.best = Verdict(action, rule)

    def _record(self, rule: Rule, action: str, verdict: str, mode: str, step: str, detail: str, started: float) -> None:
        if rule.id in self._recorded:  # a stream may find the same rule again in later text: one decision
            return
        self._recorded.add(rule.id)
        latency_us = (time.perf_counter() - started) * 1e6
        self.exchange.decisions.append(Decision(rule.policy, rule.id, self.phase, action, mode, verdict, detail, latency_us, step))
        self.metrics.policy_decision(rule.policy, rule.id, verdict)

    def reset_hits(self) -> None:
        """Forget this scan's redaction hits (a stream scans again per event); decisions stay recorded."""
        self.redacting = []

    def redact(self, parts: list[TextPart]) -> None:
        """Replace every enforced redact hit with numbered placeholders, part by part."""
        if not self.redacting or self.blocked:
            return
        redactions = self.exchange.redactions
        if redactions is None:
            redactions = self.exchange.redactions = Redactions()
        by_part: dict[int, list[tuple[int, int, str, bool]]] = {}
        for rule, hit in self.redacting:
            for index, finding in hit.spans:
                by_part.setdefault(index, []).append((finding.start, finding.end, finding.kind, rule.restore))
        for index, spans in by_part.items():
            part = parts[index]
            part.replace(redactions.apply(part.text, spans))

    def conclude(self) -> Verdict:
        """Stamp the exchange with the winning action (x-gateway-decision) and return the verdict."""
        if SEVERITY[self.best.action] > SEVERITY.get(self.exchange.decision, 0):
            self.exchange.decision = self.best.action
        return self.best
