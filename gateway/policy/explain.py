"""`gateway policy explain`: which rules apply to a request body, which fire, and why.

Every request rule is asked on its own (no prefilter, no short cut after a block), so the answer lists
the rules that would stay silent too; the final verdict is then computed exactly as the server does.
Staged rules are shown in the mode and step they take for this request: at `at` (default now) and for
`request_id` (default a fresh one, so a rollout rule's side is then a coin toss: pass the id to pin it).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

from gateway.exchange import Decision, Endpoint, Exchange, Principal
from gateway.policy.checks import Subject
from gateway.policy.policy_set import PolicySet
from gateway.policy.stages import format_instant
from gateway.policy.text import request_parts


@dataclass(frozen=True, slots=True)
class RuleExplanation:
    policy: str
    rule: str
    source: str
    check: str
    action: str
    mode: str  # for this request: a staged rule's depends on the time and the request id
    applies: bool
    fired: bool
    detail: str
    step: str = ""  # a staged rule's step (`monitor_until`, `rollout`, `enforce`)
    stage: str = ""  # a staged rule's schedule, e.g. `monitor until 2025-07-01T00:00:00Z, then rollout 10%`

    def as_dict(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in self.__slots__}


async def explain(
    policies: PolicySet, endpoint: Endpoint, request: dict[str, Any], principal: Principal, *,
    request_id: str | None = None, at: float | None = None,
) -> dict[str, Any]:
    request_id = request_id or f"explain-{time.monotonic_ns()}"
    at = time.time() if at is None else at
    exchange = _exchange(request_id, endpoint, request, principal, at)
    applies = policies.applicability(exchange)
    subject = Subject("request", exchange, request_parts(endpoint, exchange.body))
    rules = []
    for rule in policies.request_plan.rules:
        fired, detail = False, ""
        if applies(rule):
            try:
                hit = None if rule.check.remote else rule.check.inspect(subject)
                fired, detail = hit is not None, hit.detail if hit else ("remote check: not called by explain" if rule.check.remote else "")
            except Exception as exc:  # noqa: BLE001 - explain reports a failing check, it does not crash on it
                detail = f"check failed: {type(exc).__name__}: {exc} (on_error: {rule.on_error})"
        mode, step = rule.mode_for(exchange)
        stage = rule.stage.describe() if rule.stage is not None else ""
        rules.append(RuleExplanation(rule.policy, rule.id, rule.source, rule.check.kind, rule.action, mode, applies(rule), fired, detail, step, stage))
    judged = _exchange(request_id, endpoint, request, principal, at)
    verdict = await policies.check_request(judged)
    return {
        "policy_version": policies.version,
        "request_id": request_id,
        "at": format_instant(judged.ts),
        "verdict": {"action": verdict.action, "rule": verdict.rule.id if verdict.rule else None},
        "decisions": [_decision(decision) for decision in judged.decisions],
        "forwarded_body": judged.body if verdict.action not in ("block", "escalate") else None,
        "rules": [rule.as_dict() for rule in rules],
    }


def _exchange(request_id: str, endpoint: Endpoint, request: dict[str, Any], principal: Principal, at: float) -> Exchange:
    """One exchange as the server would make it; explain makes two (rule by rule, then the verdict), with
    the same request id and time so that staged rules take the same step in both."""
    exchange = Exchange(request_id, endpoint, body=copy.deepcopy(request), model=str(request.get("model", "")))
    exchange.principal = principal
    exchange.ts = at
    return exchange


def _decision(decision: Decision) -> dict[str, Any]:
    entry = {
        "policy": decision.policy, "rule": decision.rule, "action": decision.action, "mode": decision.mode,
        "verdict": decision.verdict, "detail": decision.detail,
    }
    return {**entry, "step": decision.step} if decision.step else entry
