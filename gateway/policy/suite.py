"""`gateway policy test`: the tests written inside policy files, run against the compiled bundle.

Each test is one exchange driven through the same engine the server uses: the request phase on the
test's request, then the response phase on its mocked `upstream_reply`, or the stream guard over its
mocked `upstream_stream` chunks. No network: remote checks (webhooks) have no client here, so they take
their rule's `on_error` path. Like `opa test`, a file without tests, or a rule that no test names,
fails the run: a rule nobody tested is a rule nobody knows works. So does a test whose outcome would
change by itself: one a staged rule fired in while monitored `until` a date (pin the time with `at`), or
in a percentage rollout (pin the request id with `request_id`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.exchange import Endpoint, Exchange
from gateway.pipeline import GOING_ON
from gateway.policy.engine import StreamBlocked, Verdict
from gateway.policy.model import SEVERITY, Policy, PolicyTest
from gateway.policy.policy_set import PolicySet
from gateway.policy.stages import MONITOR_UNTIL, ROLLOUT, Stage, format_instant, rollout_position

MOCK_REPLY_TEXT = "This is a mock reply."


@dataclass(slots=True)
class Outcome:
    """What one test exchange did, in the terms expectations are written in."""

    action: str = "allow"
    status: int = 200
    fired: list[str] = field(default_factory=list)
    steps: dict[str, str] = field(default_factory=dict)  # staged rules that fired -> their step
    upstream: str = ""  # the request body as the provider would receive it ("" when blocked before)
    response: str = ""  # what the client would receive


@dataclass(slots=True)
class TestResult:
    policy: str
    file: str
    name: str
    source: str
    passed: bool
    failures: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "file": self.file, "name": self.name, "source": self.source, "passed": self.passed, "failures": self.failures}


@dataclass(slots=True)
class SuiteReport:
    results: list[TestResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # files without tests, rules nobody tested

    @property
    def passed(self) -> bool:
        return not self.problems and all(result.passed for result in self.results)

    def as_dict(self) -> dict[str, Any]:
        failed = sum(not result.passed for result in self.results)
        return {
            "passed": self.passed,
            "tests": len(self.results),
            "failed": failed,
            "problems": self.problems,
            "results": [result.as_dict() for result in self.results],
        }


async def run_suite(policies: PolicySet) -> SuiteReport:
    report = SuiteReport()
    stages = {rule.id: rule.stage for policy in policies.policies for rule in policy.rules if rule.stage is not None}
    for policy in policies.policies:
        report.problems.extend(_coverage_problems(policy))
        for test in policy.tests:
            outcome = await run_test(policies, test)
            failures = check_expectations(test, outcome) + unpinned(test, outcome, stages)
            report.results.append(TestResult(policy.name, policy.source, test.name, test.source, not failures, failures))
    return report


def _coverage_problems(policy: Policy) -> list[str]:
    if not policy.tests:
        return [f"{policy.source}: policy {policy.name!r} has no tests"]
    named = set().union(*(test.expect.names() for test in policy.tests))
    return [f"{rule.source}: rule {rule.id!r} is not named by any test (expect.rule, fired or not_fired)" for rule in policy.rules if rule.id not in named]


async def run_test(policies: PolicySet, test: PolicyTest) -> Outcome:
    request = copy.deepcopy(test.request)
    streamed = test.upstream_stream is not None
    request_id = test.request_id or f"policy-test-{time.monotonic_ns()}"
    exchange = Exchange(request_id, test.endpoint, body=request, model=str(request.get("model", "")), stream=streamed)
    if test.at is not None:
        exchange.ts = test.at
    exchange.principal = test.principal
    outcome = Outcome()
    verdict = await policies.check_request(exchange)
    if _stops(outcome, verdict):
        return _finish(outcome, exchange)
    outcome.upstream = orjson.dumps(exchange.body).decode()
    if test.upstream_stream is not None:
        outcome.response = await _stream(policies, exchange, test.upstream_stream, outcome)
    else:
        reply = copy.deepcopy(test.upstream_reply) if test.upstream_reply is not None else _mock_reply(test.endpoint, request)
        verdict = await policies.check_response(exchange, reply)
        if not _stops(outcome, verdict):
            outcome.response = orjson.dumps(reply).decode()
    return _finish(outcome, exchange)


def unpinned(test: PolicyTest, outcome: Outcome, stages: dict[str, Stage]) -> list[str]:
    """Failures for staged rules whose decision in this test hangs on the clock or on a random request id:
    such a test passes today and fails on the `until` date, or passes on one run and fails on the next."""
    failures = []
    for rule_id, step in outcome.steps.items():
        stage = stages[rule_id]
        if step == MONITOR_UNTIL and test.at is None and stage.until is not None:
            failures.append(
                f"rule {rule_id!r} is monitored until {format_instant(stage.until)}, then enforced: this test's outcome "
                "changes by itself then; pin the test's time with at: (an RFC 3339 time before or after it)"
            )
        if step == ROLLOUT and test.request_id is None:
            failures.append(
                f"rule {rule_id!r} is rolled out to {stage.percent:g}% of request ids: this test's outcome depends on its "
                f"random request id; pin it with request_id:{_example_ids(rule_id, stage)}"
            )
    return failures


def _example_ids(rule_id: str, stage: Stage) -> str:
    """A request id on each side of the rule's rollout, found by trying a few, for the failure message."""
    found: dict[bool, str] = {}
    for number in range(1, 10_000):
        candidate = f"req-{number}"
        found.setdefault(rollout_position(rule_id, candidate) < stage.threshold, candidate)
        if len(found) == 2:
            break
    examples = [f"{found[side]!r} is {name}" for side, name in ((True, "enforced"), (False, "monitored")) if side in found]
    return f" ({', '.join(examples)})" if examples else ""


def _stops(outcome: Outcome, verdict: Verdict) -> bool:
    if verdict.action in GOING_ON:
        return False
    outcome.action = verdict.action
    if verdict.action == "fallback":
        return False  # the server re-routes and goes on; the test keeps the mocked reply
    outcome.status = 403
    return True


def _finish(outcome: Outcome, exchange: Exchange) -> Outcome:
    outcome.fired = [decision.rule for decision in exchange.decisions]
    outcome.steps = {decision.rule: decision.step for decision in exchange.decisions if decision.step}
    if SEVERITY[exchange.decision] > SEVERITY[outcome.action]:
        outcome.action = exchange.decision
    return outcome


async def _stream(policies: PolicySet, exchange: Exchange, chunks: tuple[str, ...], outcome: Outcome) -> str:
    guard = policies.stream_guard(exchange)
    events = [_chunk_event(exchange.endpoint, text) for text in chunks]
    released: list[dict[str, Any]] = []
    try:
        for event in events:
            released.extend(guard.feed(event) if guard is not None else [event])
        if guard is not None:
            released.extend(await guard.finish())
    except StreamBlocked as blocked:
        outcome.action = "block" if blocked.verdict.action != "escalate" else "escalate"
        outcome.status = 200  # the stream had started: the client sees a content_filter end, not a 403
    return "".join(_event_text(exchange.endpoint, event) for event in released)


def _chunk_event(endpoint: Endpoint | None, text: str) -> dict[str, Any]:
    if endpoint is Endpoint.COMPLETIONS:
        return {"object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": None}]}
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def _event_text(endpoint: Endpoint | None, event: dict[str, Any]) -> str:
    pieces = []
    for choice in event.get("choices") or ():
        if endpoint is Endpoint.COMPLETIONS:
            pieces.append(choice.get("text") or "")
        else:
            pieces.append((choice.get("delta") or {}).get("content") or "")
    return "".join(pieces)


def _mock_reply(endpoint: Endpoint, request: dict[str, Any]) -> dict[str, Any]:
    if endpoint is Endpoint.EMBEDDINGS:
        return {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.0]}], "model": request.get("model")}
    if endpoint is Endpoint.COMPLETIONS:
        return {"object": "text_completion", "choices": [{"index": 0, "text": MOCK_REPLY_TEXT, "finish_reason": "stop"}]}
    message = {"role": "assistant", "content": MOCK_REPLY_TEXT}
    return {"object": "chat.completion", "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}


def check_expectations(test: PolicyTest, outcome: Outcome) -> list[str]:
    expect = test.expect
    failures = []
    if expect.action is not None and outcome.action != expect.action:
        failures.append(f"action: expected {expect.action}, got {outcome.action}")
    if expect.status is not None and outcome.status != expect.status:
        failures.append(f"status: expected {expect.status}, got {outcome.status}")
    for rule in filter(None, (expect.rule, *expect.fired)):
        if rule not in outcome.fired:
            failures.append(f"rule {rule!r} did not fire (fired: {', '.join(outcome.fired) or 'none'})")
    for rule in expect.not_fired:
        if rule in outcome.fired:
            failures.append(f"rule {rule!r} fired, expected it not to")
    for where, seen, wanted, unwanted in (
        ("upstream request", outcome.upstream, expect.upstream_contains, expect.upstream_not_contains),
        ("response", outcome.response, expect.response_contains, expect.response_not_contains),
    ):
        failures.extend(f"{where} does not contain {text!r}" for text in wanted if text not in seen)
        failures.extend(f"{where} contains {text!r}" for text in unwanted if text in seen)
    return failures
