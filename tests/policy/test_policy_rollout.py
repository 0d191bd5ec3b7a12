"""Staged rollouts: a rule monitored `until` a date, then enforced for a `rollout` percentage of request ids.

The clock is the exchange's own start time (`Exchange.ts`, also the audit record's `ts`), so tests set it
instead of sleeping; the rollout side is a stable hash of rule id and request id, so tests pick ids.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
import yaml

from gateway.exchange import Endpoint, Exchange, Principal
from gateway.policy.compiler import BundleRejected
from gateway.policy.engine import StreamBlocked
from gateway.policy.explain import explain
from gateway.policy.policy_set import PolicySet
from gateway.policy.schema import policy_schema
from gateway.policy.stages import Stage, parse_instant, rollout_position
from gateway.policy.suite import run_suite
from gateway.testing.upstream import FakeUpstream, Reply
from policy_support import chat, compile_dir, delta_event, engine, policy_file, reply, write_policies
from support import audit_record_for, get, run_gateway, sdk_client

DATE = "2030-01-01T00:00:00Z"
INSTANT = parse_instant(DATE)

STAGED = """
rules:
  - id: no-apple
    phase: request
    check: {keywords: {words: [apple]}}
    action: block
"""


def staged(extra: str, rule: str = STAGED) -> str:
    """STAGED with `extra` keys added to its rule (indented under it)."""
    return rule.rstrip("\n") + "\n" + "".join(f"    {line}\n" for line in extra.strip("\n").splitlines())


def judged(policies: PolicySet, *, at: float, request_id: str = "req", content: str = "an apple") -> Exchange:
    exchange = chat(content)
    exchange.request_id, exchange.ts = request_id, at
    asyncio.run(policies.check_request(exchange))
    return exchange


def sides(rule_id: str, percent: float, count: int = 1) -> tuple[list[str], list[str]]:
    """Request ids that the rule's rollout enforces, and ids it monitors (`count` of each)."""
    threshold = Stage(percent=percent).threshold
    enforced: list[str] = []
    monitored: list[str] = []
    number = 0
    while len(enforced) < count or len(monitored) < count:
        number += 1
        candidate = f"rid-{number}"
        (enforced if rollout_position(rule_id, candidate) < threshold else monitored).append(candidate)
    return enforced[:count], monitored[:count]


# -- validation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (staged(f"until: {DATE}"), "broken.yaml:10: spec.rules[0].until: needs mode: monitor beside it"),
        (staged(f"mode: enforce\nuntil: {DATE}"), "broken.yaml:11: spec.rules[0].until: needs mode: monitor beside it"),
        (staged("mode: monitor\nuntil: 2030-01-01T00:00:00"), "broken.yaml:11: spec.rules[0].until: must be an RFC 3339 time with a time zone"),
        (staged("mode: monitor\nuntil: 2030-01-01"), "broken.yaml:11: spec.rules[0].until: must be an RFC 3339 time with a time zone"),
        (staged("mode: monitor\nuntil: 2030-13-01T00:00:00Z"), "broken.yaml:11: spec.rules[0].until: is not a valid time"),
        (staged("mode: monitor\nuntil: 1893456000"), "spec.rules[0].until: must be an RFC 3339 time"),
        (staged("rollout: {percent: 0}"), "broken.yaml:10: spec.rules[0].rollout.percent: must be greater than 0 and less than 100"),
        (staged("rollout: {percent: 100}"), "spec.rules[0].rollout.percent: must be greater than 0 and less than 100"),
        (staged("rollout: {percent: ten}"), "spec.rules[0].rollout.percent: must be a number"),
        (staged("rollout: {}"), "spec.rules[0].rollout.percent: is required"),
        (staged("rollout: {percent: 5, salt: x}"), "spec.rules[0].rollout.salt: unknown key"),
        (staged("mode: monitor\nrollout: {percent: 5}"), "broken.yaml:11: spec.rules[0].rollout: never applies with mode: monitor here"),
        (staged("mode: off\nrollout: {percent: 5}"), "spec.rules[0].rollout: never applies with mode: off here"),
        (f"until: {DATE}\n" + STAGED, "broken.yaml:5: spec.until: needs mode: monitor beside it"),
        ("mode: monitor\nuntil: soon\n" + STAGED, "broken.yaml:6: spec.until: must be an RFC 3339 time"),
        ("rollout: {percent: -1}\n" + STAGED, "broken.yaml:5: spec.rollout.percent: must be greater than 0 and less than 100 (got -1)"),
        (STAGED + "tests:\n  - {name: t, at: 2030-01-01, request: {model: m}, expect: {rule: no-apple}}\n", "spec.tests[0].at: must be an RFC 3339 time"),
    ],
)
def test_staging_mistakes_name_the_file_line_and_key(tmp_path: Path, spec: str, expected: str) -> None:
    write_policies(tmp_path, broken=spec)
    with pytest.raises(BundleRejected) as caught:
        compile_dir(tmp_path)
    assert expected in str(caught.value), str(caught.value)


def test_a_staged_rule_compiles_to_one_stage_and_plain_rules_to_none(tmp_path: Path) -> None:
    policies = engine(tmp_path, mixed=STAGED + """
  - {id: staged, phase: request, check: {pii: {}}, action: flag, mode: monitor, until: "2030-01-01T02:00:00+02:00", rollout: {percent: 12.5}}
""")
    plain, staged_rule = policies.policies[0].rules
    assert plain.stage is None and plain.mode == "enforce"
    assert staged_rule.stage == Stage(until=INSTANT, percent=12.5) and staged_rule.mode == "enforce"


# -- until: monitored, then enforced ------------------------------------------------------------------
def test_a_rule_is_monitored_until_the_instant_and_enforced_from_it(tmp_path: Path) -> None:
    policies = engine(tmp_path, dated=staged(f"mode: monitor\nuntil: {DATE}"))
    before = judged(policies, at=INSTANT - 1)
    assert before.decision == "allow"
    assert [(d.mode, d.verdict, d.step) for d in before.decisions] == [("monitor", "would_block", "monitor_until")]
    for at in (INSTANT, INSTANT + 86400):
        after = judged(policies, at=at)
        assert after.decision == "block"
        assert [(d.mode, d.verdict, d.step) for d in after.decisions] == [("enforce", "block", "enforce")]


def test_both_phases_of_one_exchange_take_the_same_step(tmp_path: Path) -> None:
    policies = engine(tmp_path, dated=staged(f"mode: monitor\nuntil: {DATE}").replace("phase: request", "phase: [request, response]"))
    exchange = judged(policies, at=INSTANT - 0.001)
    asyncio.run(policies.check_response(exchange, reply("apple pie")))
    assert [(d.phase, d.verdict, d.step) for d in exchange.decisions] == [
        ("request", "would_block", "monitor_until"), ("response", "would_block", "monitor_until"),
    ]


def test_a_policy_until_stages_its_rules_and_the_stricter_setting_wins(tmp_path: Path) -> None:
    later = "2031-01-01T00:00:00Z"
    policies = engine(tmp_path, dated=f"""
        mode: monitor
        until: {DATE}
        rules:
          - {{id: inherits, phase: request, check: {{keywords: {{words: [apple]}}}}, action: block}}
          - {{id: later, phase: request, check: {{keywords: {{words: [apple]}}}}, action: block, mode: monitor, until: "{later}"}}
          - {{id: for-good, phase: request, check: {{keywords: {{words: [apple]}}}}, action: block, mode: monitor}}
          - {{id: enforced, phase: request, check: {{keywords: {{words: [apple]}}}}, action: block, mode: enforce}}
    """)
    stages = {rule.id: (rule.mode, rule.stage) for rule in policies.policies[0].rules}
    assert stages == {
        "inherits": ("enforce", Stage(until=INSTANT)),
        "later": ("enforce", Stage(until=parse_instant(later))),  # monitored as long as either level says so
        "for-good": ("monitor", None),  # monitor without until is monitor for good
        "enforced": ("enforce", Stage(until=INSTANT)),  # the policy's monitoring period still applies
    }
    between = judged(policies, at=INSTANT + 1)
    assert {d.rule: d.verdict for d in between.decisions} == {"inherits": "block", "later": "would_block", "for-good": "would_block", "enforced": "block"}


# -- rollout: a deterministic share of request ids ---------------------------------------------------
def test_rollout_enforces_close_to_its_percentage_of_request_ids(tmp_path: Path) -> None:
    policies = engine(tmp_path, rolled=staged("rollout: {percent: 10}"))
    (rule,) = policies.policies[0].rules
    modes = [rule.mode_for(Exchange(f"request-{number}", None))[0] for number in range(10_000)]
    assert 900 <= modes.count("enforce") <= 1100
    assert set(modes) == {"enforce", "monitor"}


def test_the_enforced_share_follows_the_verdicts(tmp_path: Path) -> None:
    policies = engine(tmp_path, rolled=staged("rollout: {percent: 50}"))
    (rule,) = policies.policies[0].rules
    for number in range(200):
        exchange = judged(policies, at=INSTANT, request_id=f"r{number}")
        (decision,) = exchange.decisions
        mode = rule.mode_for(exchange)[0]
        assert (decision.mode, decision.step, exchange.decision) == (mode, "rollout", "block" if mode == "enforce" else "allow")
        assert decision.verdict == ("block" if mode == "enforce" else "would_block")


def test_a_request_id_gets_the_same_answer_from_separately_compiled_bundles(tmp_path: Path) -> None:
    spec = staged("rollout: {percent: 30}")
    first = engine(tmp_path / "one", rolled=spec)
    second = engine(tmp_path / "two", rolled=spec)
    ids = [f"id-{number}" for number in range(1000)]
    answers = [[judged(policies, at=INSTANT, request_id=rid).decisions[0].verdict for rid in ids] for policies in (first, second)]
    assert answers[0] == answers[1]
    assert 200 <= answers[0].count("block") <= 400


def test_the_rollout_position_is_the_documented_blake2b_of_rule_and_request_id() -> None:
    # The same in every worker, instance and version (never Python's salted hash()): pinned here.
    assert rollout_position("no-apple", "req-1") == 0x615E5306DB3E1563
    b2sum = shutil.which("b2sum")
    if b2sum is not None:  # and as docs/policies.md tells operators to recompute it
        printed = subprocess.run([b2sum, "-l", "64"], input=b"no-apple:req-1", capture_output=True, check=True).stdout
        assert int(printed.split()[0], 16) == rollout_position("no-apple", "req-1")


def test_rules_sample_independently(tmp_path: Path) -> None:
    policies = engine(tmp_path, two="""
        rollout: {percent: 50}
        rules:
          - {id: first, phase: request, check: {keywords: {words: [apple]}}, action: flag}
          - {id: second, phase: request, check: {keywords: {words: [apple]}}, action: flag}
    """)
    first, second = policies.policies[0].rules
    both = sum(
        first.mode_for(exchange)[0] == second.mode_for(exchange)[0] == "enforce"
        for exchange in (Exchange(f"request-{number}", None) for number in range(10_000))
    )
    assert 2300 <= both <= 2700  # a quarter: not the same half twice


def test_monitor_until_then_rollout_then_the_smaller_percentage_wins(tmp_path: Path) -> None:
    policies = engine(tmp_path, both=f"""
        rollout: {{percent: 50}}
        rules:
          - {{id: no-apple, phase: request, check: {{keywords: {{words: [apple]}}}}, action: block, mode: monitor, until: "{DATE}", rollout: {{percent: 10}}}}
    """)
    (rule,) = policies.policies[0].rules
    assert rule.stage == Stage(until=INSTANT, percent=10)
    enforced, monitored = sides("no-apple", 10)
    before = judged(policies, at=INSTANT - 1, request_id=enforced[0])
    assert [(d.verdict, d.step) for d in before.decisions] == [("would_block", "monitor_until")]  # the whole period, every id
    assert [(d.mode, d.step) for d in judged(policies, at=INSTANT, request_id=enforced[0]).decisions] == [("enforce", "rollout")]
    assert [(d.mode, d.step) for d in judged(policies, at=INSTANT, request_id=monitored[0]).decisions] == [("monitor", "rollout")]


def test_a_staged_redact_rule_rewrites_only_where_it_is_enforced(tmp_path: Path) -> None:
    policies = engine(tmp_path, mask="""
        rules:
          - {id: mask-email, phase: request, check: {pii: {entities: [EMAIL]}}, action: redact, rollout: {percent: 50}}
    """)
    enforced, monitored = sides("mask-email", 50)
    masked = judged(policies, at=INSTANT, request_id=enforced[0], content="mail ann@example.com")
    kept = judged(policies, at=INSTANT, request_id=monitored[0], content="mail ann@example.com")
    assert masked.body["messages"][0]["content"] == "mail [EMAIL_1]" and masked.decisions[0].verdict == "redact"
    assert kept.body["messages"][0]["content"] == "mail ann@example.com" and kept.decisions[0].verdict == "would_redact"


def test_a_rollout_rule_on_a_stream_blocks_only_its_enforced_share(tmp_path: Path) -> None:
    policies = engine(tmp_path, replies="""
        rules:
          - {id: no-plutonium, phase: response, check: {keywords: {words: [plutonium]}}, action: block, rollout: {percent: 50}}
    """)
    enforced, monitored = sides("no-plutonium", 50)
    for request_id, blocked in ((enforced[0], True), (monitored[0], False)):
        exchange = chat("go", stream=True)
        exchange.request_id = request_id
        guard = policies.stream_guard(exchange)
        assert guard is not None
        if blocked:
            with pytest.raises(StreamBlocked):
                guard.feed(delta_event("plutonium", finish="stop"))
        else:
            guard.feed(delta_event("plutonium", finish="stop"))
        assert [(d.mode, d.step) for d in exchange.decisions] == [("enforce" if blocked else "monitor", "rollout")]


# -- the audit record ---------------------------------------------------------------------------------
@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    return tmp_path / "policies"


GATEWAY_RULES = """
rules:
  - {id: plain-flag, phase: request, check: {keywords: {words: [apple]}}, action: flag}
  - {id: dated-block, phase: request, check: {keywords: {words: [apple]}}, action: block, mode: monitor, until: "%s"}
  - {id: rolled-block, phase: request, check: {keywords: {words: [pear]}}, action: block, rollout: {percent: 50}}
  - {id: rolled-stream, phase: response, check: {keywords: {words: [plutonium]}}, action: block, rollout: {percent: 50}}
"""


def _ask(gateway: Any, request_id: str, content: str) -> Any:
    with sdk_client(gateway) as client:
        return client.chat.completions.with_raw_response.create(
            model="gpt-test", messages=[{"role": "user", "content": content}], extra_headers={"x-request-id": request_id}
        )


def test_the_audit_record_of_a_real_exchange_names_the_step(make_gateway: Any, upstream: FakeUpstream, policy_dir: Path, store_dir: Path) -> None:
    write_policies(policy_dir, staged=GATEWAY_RULES % "2999-01-01T00:00:00Z")
    gateway = make_gateway()
    raw = _ask(gateway, "dated-1", "an apple")
    assert raw.headers["x-gateway-decision"] == "flag"  # monitored: the request went through
    record = audit_record_for(store_dir, "dated-1")
    plain, dated = record["decisions"]
    assert plain["step"] == "" and plain["verdict"] == "flag"
    assert (dated["rule"], dated["mode"], dated["verdict"], dated["step"]) == ("dated-block", "monitor", "would_block", "monitor_until")

    enforced, monitored = sides("rolled-block", 50)
    with sdk_client(gateway) as client, pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "a pear"}], extra_headers={"x-request-id": enforced[0]})
    assert caught.value.response.json()["error"]["code"] == "rolled-block"
    (decision,) = audit_record_for(store_dir, enforced[0])["decisions"]
    assert (decision["mode"], decision["verdict"], decision["step"]) == ("enforce", "block", "rollout")
    assert _ask(gateway, monitored[0], "a pear").headers["x-gateway-decision"] == "allow"
    (decision,) = audit_record_for(store_dir, monitored[0])["decisions"]
    assert (decision["mode"], decision["verdict"], decision["step"]) == ("monitor", "would_block", "rollout")


def test_a_dated_rule_past_its_until_is_enforced_by_the_gateway(make_gateway: Any, upstream: FakeUpstream, policy_dir: Path, store_dir: Path) -> None:
    write_policies(policy_dir, staged=GATEWAY_RULES % "2000-01-01T00:00:00Z")
    gateway = make_gateway()
    with sdk_client(gateway) as client, pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "an apple"}], extra_headers={"x-request-id": "dated-2"})
    decisions = {d["rule"]: d for d in audit_record_for(store_dir, "dated-2")["decisions"]}
    assert (decisions["dated-block"]["verdict"], decisions["dated-block"]["step"]) == ("block", "enforce")
    assert decisions["plain-flag"]["step"] == ""
    assert upstream.received == []


def test_a_streamed_exchange_records_its_rollout_step(make_gateway: Any, upstream: FakeUpstream, policy_dir: Path, store_dir: Path) -> None:
    write_policies(policy_dir, staged=GATEWAY_RULES % "2999-01-01T00:00:00Z")
    gateway = make_gateway()
    enforced, monitored = sides("rolled-stream", 50)
    for request_id, stopped in ((enforced[0], True), (monitored[0], False)):
        upstream.enqueue(Reply(chunks=("some ", "plutonium ", "talk")))
        text = ""
        with sdk_client(gateway) as client:
            stream = client.chat.completions.create(model="gpt-test", stream=True, messages=[{"role": "user", "content": "go"}], extra_headers={"x-request-id": request_id})
            try:
                text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
            except openai.APIError:
                assert stopped
        record = audit_record_for(store_dir, request_id)
        (decision,) = record["decisions"]
        assert (decision["phase"], decision["step"]) == ("response", "rollout")
        if stopped:
            assert (record["outcome"], decision["verdict"]) == ("blocked", "block") and "plutonium" not in text
        else:
            assert (record["outcome"], decision["verdict"], text) == ("ok", "would_block", "some plutonium talk")


# -- policy test, explain, diff, schema -------------------------------------------------------------
def _suite_policy(tests: str, until: str = DATE) -> str:
    return f"""
rules:
  - {{id: no-apple, phase: request, check: {{keywords: {{words: [apple]}}}}, action: block, mode: monitor, until: "{until}", rollout: {{percent: 50}}}}
tests:
{tests}"""


def test_policy_tests_pin_time_and_request_id(tmp_path: Path) -> None:
    enforced, monitored = sides("no-apple", 50)
    request = "request: {model: mock-gpt, messages: [{role: user, content: an apple}]}"
    policies = engine(tmp_path, suite=_suite_policy(f"""
  - {{name: monitored before the date, at: "2029-12-31T23:59:59Z", {request}, expect: {{action: allow, fired: no-apple}}}}
  - {{name: enforced in the rollout, at: "{DATE}", request_id: {enforced[0]}, {request}, expect: {{action: block, rule: no-apple}}}}
  - {{name: monitored in the rollout, at: "{DATE}", request_id: {monitored[0]}, {request}, expect: {{action: allow, fired: no-apple}}}}
"""))
    report = asyncio.run(run_suite(policies))
    assert report.passed, report.as_dict()
    assert len(report.results) == 3


def test_policy_tests_that_would_flip_by_themselves_fail(tmp_path: Path) -> None:
    request = "request: {model: mock-gpt, messages: [{role: user, content: an apple}]}"
    policies = engine(tmp_path, suite=_suite_policy(f"""
  - {{name: unpinned time, request_id: fixed, {request}, expect: {{fired: no-apple}}}}
  - {{name: unpinned id, at: "3000-01-01T00:00:00Z", {request}, expect: {{fired: no-apple}}}}
""", until="2999-01-01T00:00:00Z"))
    failures = {result.name: result.failures for result in asyncio.run(run_suite(policies)).results}
    (unpinned,) = failures["unpinned time"]
    assert "is monitored until 2999-01-01T00:00:00Z, then enforced" in unpinned and "pin the test's time with at:" in unpinned
    (unpinned,) = failures["unpinned id"]
    assert "rolled out to 50% of request ids" in unpinned and "request_id:" in unpinned and "is enforced" in unpinned and "is monitored" in unpinned


def test_explain_shows_the_mode_and_step_for_the_request(tmp_path: Path) -> None:
    policies = engine(tmp_path, dated=staged(f"mode: monitor\nuntil: {DATE}\nrollout: {{percent: 50}}") + "  - {id: plain, phase: request, check: {pii: {}}, action: flag}\n")
    enforced, _ = sides("no-apple", 50)
    request = {"model": "mock-gpt", "messages": [{"role": "user", "content": "an apple"}]}
    before = asyncio.run(explain(policies, Endpoint.CHAT, request, Principal(), request_id=enforced[0], at=INSTANT - 1))
    after = asyncio.run(explain(policies, Endpoint.CHAT, request, Principal(), request_id=enforced[0], at=INSTANT))
    rules = {rule["rule"]: rule for rule in before["rules"]}
    assert (rules["no-apple"]["mode"], rules["no-apple"]["step"]) == ("monitor", "monitor_until")
    assert rules["no-apple"]["stage"] == f"monitor until {DATE}, then rollout 50%"
    assert (rules["plain"]["step"], rules["plain"]["stage"]) == ("", "")
    assert before["verdict"]["action"] == "allow" and before["decisions"][0]["step"] == "monitor_until"
    assert after["verdict"] == {"action": "block", "rule": "no-apple"} and after["decisions"][0]["step"] == "rollout"
    assert (after["request_id"], after["at"]) == (enforced[0], DATE)


def test_explain_from_the_command_line_prints_the_step(tmp_path: Path) -> None:
    write_policies(tmp_path / "p", dated=staged(f"mode: monitor\nuntil: {DATE}"))
    (tmp_path / "request.json").write_text(json.dumps({"model": "mock-gpt", "messages": [{"role": "user", "content": "an apple"}]}))
    result = run_gateway("policy", "explain", "p", "--request", "request.json", "--request-id", "r-1", "--at", "2029-06-01T00:00:00Z", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "request id r-1 at 2029-06-01T00:00:00Z" in result.stdout
    assert f"dated/no-apple: keywords -> block [monitor, step monitor_until: monitor until {DATE}, then enforce]" in result.stdout
    bad = run_gateway("policy", "explain", "p", "--request", "request.json", "--at", "tomorrow", cwd=tmp_path)
    assert bad.returncode == 1 and "--at must be an RFC 3339 time" in bad.stderr


def test_diff_shows_until_and_rollout_changes(tmp_path: Path) -> None:
    write_policies(tmp_path / "old", fruit=staged(f"mode: monitor\nuntil: {DATE}\nrollout: {{percent: 10}}"))
    write_policies(tmp_path / "new", fruit="mode: monitor\nuntil: 2030-02-01T00:00:00Z\n" + staged(f"mode: monitor\nuntil: {DATE}\nrollout: {{percent: 50}}"))
    result = run_gateway("policy", "diff", "old", "new", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "~ fruit/no-apple" in lines and "    rollout: {'percent': 10} -> {'percent': 50}" in lines
    assert "~ policy fruit" in lines and "    until: None -> '2030-02-01T00:00:00Z'" in lines
    write_policies(tmp_path / "newer", fruit=staged("rollout: {percent: 50}"))
    lines = run_gateway("policy", "diff", "old", "newer", cwd=tmp_path).stdout.splitlines()
    assert f"    until: '{DATE}' -> None" in lines and "    mode: 'monitor' -> None" in lines


def test_the_schema_knows_the_staging_keys() -> None:
    validator = jsonschema.Draft202012Validator(policy_schema())
    document = yaml.safe_load(policy_file("fruit", "mode: monitor\nuntil: '2030-01-01T00:00:00Z'\nrollout: {percent: 50}\n" + staged(
        "mode: monitor\nuntil: '2030-01-01T00:00:00+02:00'\nrollout: {percent: 2.5}"
    ) + "tests:\n  - {name: t, at: '2030-01-01T00:00:00Z', request_id: r-1, request: {model: m}, expect: {rule: no-apple}}\n"))
    assert not list(validator.iter_errors(document))
    document["spec"]["rules"][0]["rollout"]["percent"] = 100
    document["spec"]["until"] = "2030-01-01"
    assert len(list(validator.iter_errors(document))) == 2


def test_the_admin_api_shows_each_rules_schedule(make_gateway: Any, policy_dir: Path) -> None:
    write_policies(policy_dir, staged=GATEWAY_RULES % "2999-01-01T00:00:00Z")
    gateway = make_gateway()
    (policy,) = get(f"{gateway.url}/admin/policies").json()["policies"]
    rules = {rule["id"]: rule for rule in policy["rules"]}
    assert rules["plain-flag"]["stage"] is None
    assert rules["dated-block"]["stage"] == {
        "until": "2999-01-01T00:00:00Z", "rollout_percent": None, "schedule": "monitor until 2999-01-01T00:00:00Z, then enforce",
    }
    assert rules["rolled-block"]["stage"] == {"until": None, "rollout_percent": 50, "schedule": "rollout 50%"}
