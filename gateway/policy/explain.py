"""`gateway policy explain`: which rules apply to a request body, which fire, and why.

Every request rule is asked on its own (no prefilter, no short cut after a block), so the answer lists
the rules that would stay silent too; the final verdict is then computed exactly as the server does.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

from gateway.exchange import Endpoint, Exchange, Principal
from gateway.policy.checks import Subject
from gateway.policy.policy_set import PolicySet
from gateway.policy.text import request_parts


@dataclass(frozen=True, slots=True)
class RuleExplanation:
    policy: str
    rule: str
    source: str
    check: str
    action: str
    mode: str
    applies: bool
    fired: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in self.__slots__}


async def explain(policies: PolicySet, endpoint: Endpoint, request: dict[str, Any], principal: Principal) -> dict[str, Any]:
    exchange = Exchange("explain", endpoint, body=copy.deepcopy(request), model=str(request.get("model", "")))
    exchange.principal = principal
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
        rules.append(RuleExplanation(rule.policy, rule.id, rule.source, rule.check.kind, rule.action, rule.mode, applies(rule), fired, detail))
    judged = Exchange(f"explain-{time.monotonic_ns()}", endpoint, body=copy.deepcopy(request), model=exchange.model)
    judged.principal = principal
    verdict = await policies.check_request(judged)
    return {
        "policy_version": policies.version,
        "verdict": {"action": verdict.action, "rule": verdict.rule.id if verdict.rule else None},
        "decisions": [{"policy": d.policy, "rule": d.rule, "action": d.action, "mode": d.mode, "verdict": d.verdict, "detail": d.detail} for d in judged.decisions],
        "forwarded_body": judged.body if verdict.action not in ("block", "escalate") else None,
        "rules": [rule.as_dict() for rule in rules],
    }
