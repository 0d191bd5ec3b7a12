"""The declarative policy engine: a compiled bundle, evaluated on every exchange.

Built once per load (`compile_bundle`), immutable afterwards, swapped whole on reload. Per phase the
rules are sorted into a plan: size limits first (they bound the cost of everything else), then every
`regex`/`keywords` rule behind one shared RE2 set (one pass over the text tells which of a thousand
patterns can match at all), then the other local checks, then remote checks (awaited only when no
enforced rule has already blocked).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import re2

from gateway.config.model import StreamHold
from gateway.exchange import Exchange
from gateway.metrics import Metrics
from gateway.policy.checks import Subject
from gateway.policy.engine import ALLOW, StreamGuard, Verdict
from gateway.policy.evaluation import Applies, Evaluation, everything
from gateway.policy.model import Policy, Rule
from gateway.policy.stream import guard_for
from gateway.policy.text import TextPart, reply_parts, request_parts

if TYPE_CHECKING:
    from aiohttp import ClientSession


@dataclass(frozen=True, slots=True)
class PhasePlan:
    rules: tuple[Rule, ...]
    first: tuple[Rule, ...]  # limits
    prefiltered: tuple[Rule, ...]  # regex/keywords; index i is pattern i of `prefilter`
    prefilter: Any  # re2.Set, or None
    local: tuple[Rule, ...]
    remote: tuple[Rule, ...]

    @classmethod
    def build(cls, rules: Sequence[Rule]) -> PhasePlan:
        first = tuple(rule for rule in rules if rule.check.first)
        prefiltered = tuple(rule for rule in rules if rule.check.patterns and not rule.check.first)
        remote = tuple(rule for rule in rules if rule.check.remote)
        local = tuple(rule for rule in rules if rule not in first and rule not in prefiltered and rule not in remote)
        return cls(tuple(rules), first, prefiltered, _pattern_set(prefiltered), local, remote)

    def matching_patterns(self, parts: list[TextPart]) -> set[int]:
        if self.prefilter is None:
            return set()
        found: set[int] = set()
        for part in parts:
            matched = self.prefilter.Match(part.text)
            if matched:
                found.update(matched)
        return found

    async def evaluate(self, evaluation: Evaluation, subject: Subject) -> None:
        self.evaluate_local(evaluation, subject)
        if self.remote and not evaluation.blocked:
            for rule in self.remote:
                await evaluation.run_remote(rule, subject)

    def evaluate_local(self, evaluation: Evaluation, subject: Subject) -> None:
        for rule in self.first:
            evaluation.run(rule, subject)
        if evaluation.blocked:
            return  # a limit stopped it: the text is never inspected
        for slot in sorted(self.matching_patterns(subject.parts)):
            evaluation.run(self.prefiltered[slot], subject)
        for rule in self.local:
            evaluation.run(rule, subject)


def _pattern_set(rules: Sequence[Rule]) -> Any:
    if not rules:
        return None
    patterns = re2.Set.SearchSet(re2.Options())
    for rule in rules:
        (pattern,) = rule.check.patterns
        patterns.Add(pattern)
    patterns.Compile()
    return patterns


class PolicySet:
    """Implements `PolicyEngine` for a loaded bundle."""

    def __init__(
        self,
        policies: Sequence[Policy],
        version: str,
        metrics: Metrics,
        http: ClientSession | None = None,
        stream_hold: StreamHold = StreamHold(),
    ) -> None:
        self.policies = tuple(policies)
        self.stream_hold = stream_hold
        self.version = version
        self.metrics = metrics
        self.http = http
        rules = [rule for policy in self.policies for rule in policy.rules if rule.mode != "off"]
        self.request_plan = PhasePlan.build([rule for rule in rules if "request" in rule.phases])
        self.response_plan = PhasePlan.build([rule for rule in rules if "response" in rule.phases])
        self.stream_plan = PhasePlan.build([rule for rule in self.response_plan.rules if rule.stream == "incremental"])
        self.stream_buffered = tuple(rule for rule in self.response_plan.rules if rule.stream == "buffer")
        self._narrowed = {policy.name: policy.match for policy in self.policies if not policy.match.everything}
        self.inspects_requests = bool(self.request_plan.rules)
        self.inspects_responses = bool(self.response_plan.rules)

    @property
    def rule_count(self) -> int:
        return sum(len(policy.rules) for policy in self.policies)

    def applicability(self, exchange: Exchange) -> Applies:
        """Which rules apply to this exchange (the policies' `match` blocks), decided once per phase."""
        if not self._narrowed:
            return everything
        excluded = {name for name, match in self._narrowed.items() if not match.applies(exchange)}
        if not excluded:
            return everything
        return lambda rule: rule.policy not in excluded

    async def check_request(self, exchange: Exchange) -> Verdict:
        plan = self.request_plan
        if not plan.rules:
            return ALLOW
        subject = Subject("request", exchange, request_parts(exchange.endpoint, exchange.body), http=self.http)
        evaluation = Evaluation("request", exchange, self.metrics, self.applicability(exchange))
        await plan.evaluate(evaluation, subject)
        evaluation.redact(subject.parts)
        return evaluation.conclude()

    async def check_response(self, exchange: Exchange, reply: dict[str, Any]) -> Verdict:
        plan = self.response_plan
        redactions = exchange.redactions
        if not plan.rules and not (redactions is not None and redactions.restoring):
            return ALLOW
        parts = reply_parts(exchange.endpoint, reply)
        verdict = ALLOW
        if plan.rules:
            subject = Subject("response", exchange, parts, reply=reply, http=self.http)
            evaluation = Evaluation("response", exchange, self.metrics, self.applicability(exchange))
            await plan.evaluate(evaluation, subject)
            evaluation.redact(parts)
            verdict = evaluation.conclude()
        redactions = exchange.redactions
        if redactions is not None and redactions.restoring and verdict.action != "block":
            for part in parts:
                restored = redactions.restore(part.text)
                if restored != part.text:
                    part.replace(restored)
        return verdict

    def stream_guard(self, exchange: Exchange) -> StreamGuard | None:
        return guard_for(self, exchange)
