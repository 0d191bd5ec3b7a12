"""The compiled engine on its own: verdicts, redaction, modes, matching, errors, normalisation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.exchange import Endpoint, Exchange, Principal
from gateway.policy.policy_set import PolicySet
from policy_support import chat, engine, reply

REDACT_EMAIL = """
rules:
  - id: mask-email
    phase: [request]
    check: {pii: {entities: [EMAIL]}}
    action: redact
    restore: true
"""


def request_verdict(policies: PolicySet, exchange: Exchange) -> str:
    return asyncio.run(policies.check_request(exchange)).action


def test_redaction_uses_numbered_placeholders_consistently(tmp_path: Path) -> None:
    policies = engine(tmp_path, pii=REDACT_EMAIL)
    exchange = chat("mail ann@example.com, bob@example.org and ann@example.com again")
    assert request_verdict(policies, exchange) == "redact"
    content = exchange.body["messages"][0]["content"]
    assert content == "mail [EMAIL_1], [EMAIL_2] and [EMAIL_1] again"
    assert exchange.decision == "redact"
    (decision,) = exchange.decisions
    assert (decision.policy, decision.rule, decision.phase, decision.verdict, decision.detail) == ("pii", "mask-email", "request", "redact", "EMAIL x3")


def test_restore_puts_originals_back_into_the_reply(tmp_path: Path) -> None:
    policies = engine(tmp_path, pii=REDACT_EMAIL)
    exchange = chat("write to ann@example.com")
    asyncio.run(policies.check_request(exchange))
    answer = reply("I wrote to [EMAIL_1] and not to [EMAIL_9].")
    asyncio.run(policies.check_response(exchange, answer))
    assert answer["choices"][0]["message"]["content"] == "I wrote to ann@example.com and not to [EMAIL_9]."


def test_every_text_bearing_part_is_inspected(tmp_path: Path) -> None:
    policies = engine(tmp_path, words="""
        rules:
          - id: no-banana
            phase: request
            check: {keywords: {words: [banana]}}
            action: redact
    """)
    body = {
        "model": "mock-gpt",
        "messages": [
            {"role": "system", "content": "plain"},
            {"role": "user", "name": "banana", "content": [{"type": "text", "text": "a banana"}, {"type": "image_url", "image_url": {"url": "x"}}]},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"fruit": "banana"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "banana result"},
        ],
    }
    exchange = Exchange("t", Endpoint.CHAT, body=body, model="mock-gpt")
    assert request_verdict(policies, exchange) == "redact"
    assert "banana" not in str(exchange.body)
    assert exchange.body["messages"][1]["content"][1] == {"type": "image_url", "image_url": {"url": "x"}}


@pytest.mark.parametrize(
    "disguised",
    [
        "ba\u200bnana",  # zero-width space
        "ｂａｎａｎａ",  # fullwidth letters (NFKC)
        "ban\u00adana",  # soft hyphen
        "b\ufe0fanana",  # variation selector
    ],
)
def test_lookalike_and_invisible_characters_do_not_slip_past(tmp_path: Path, disguised: str) -> None:
    policies = engine(tmp_path, words="""
        rules:
          - id: no-banana
            phase: request
            check: {keywords: {words: [banana]}}
            action: block
    """)
    assert request_verdict(policies, chat(f"I like {disguised} bread")) == "block"


def test_the_most_restrictive_action_wins_and_every_fired_rule_is_recorded(tmp_path: Path) -> None:
    policies = engine(tmp_path, many="""
        rules:
          - {id: flag-it, phase: request, check: {keywords: {words: [apple]}}, action: flag}
          - {id: mask-it, phase: request, check: {keywords: {words: [apple]}}, action: redact}
          - {id: stop-it, phase: request, check: {keywords: {words: [apple]}}, action: block}
          - {id: quiet, phase: request, check: {keywords: {words: [pear]}}, action: block}
    """)
    exchange = chat("an apple a day")
    verdict = asyncio.run(policies.check_request(exchange))
    assert (verdict.action, verdict.rule.id if verdict.rule else None) == ("block", "stop-it")
    assert sorted(decision.rule for decision in exchange.decisions) == ["flag-it", "mask-it", "stop-it"]
    assert exchange.body["messages"][0]["content"] == "an apple a day"  # nothing is rewritten for a blocked request


def test_monitor_mode_records_would_action_and_changes_nothing(tmp_path: Path) -> None:
    policies = engine(tmp_path, shadow="""
        mode: monitor
        rules:
          - {id: shadow-block, phase: request, check: {keywords: {words: [apple]}}, action: block}
          - {id: shadow-mask, phase: request, check: {pii: {}}, action: redact}
    """)
    exchange = chat("an apple for ann@example.com")
    assert request_verdict(policies, exchange) == "allow"
    assert exchange.body["messages"][0]["content"] == "an apple for ann@example.com"
    assert {(d.rule, d.mode, d.verdict) for d in exchange.decisions} == {("shadow-block", "monitor", "would_block"), ("shadow-mask", "monitor", "would_redact")}


def test_rules_switched_off_never_run(tmp_path: Path) -> None:
    policies = engine(tmp_path, off="""
        rules:
          - {id: gone, phase: request, check: {keywords: {words: [apple]}}, action: block, mode: off}
    """)
    exchange = chat("apple")
    assert request_verdict(policies, exchange) == "allow" and not exchange.decisions


def test_match_blocks_narrow_a_policy_to_models_apps_claims_and_routes(tmp_path: Path) -> None:
    policies = engine(tmp_path, narrow="""
        match: {models: ["gpt-4o*"], apps: [support-bot], claims: {tenant: [acme]}, routes: ["/v1/chat/*"]}
        rules:
          - {id: acme-only, phase: request, check: {keywords: {words: [apple]}}, action: block}
    """)
    acme = Principal(app="support-bot", tenant="acme")
    assert request_verdict(policies, chat("apple", "gpt-4o-mini", principal=acme)) == "block"
    assert request_verdict(policies, chat("apple", "mock-gpt", principal=acme)) == "allow"
    assert request_verdict(policies, chat("apple", "gpt-4o", principal=Principal(app="support-bot", tenant="other"))) == "allow"
    assert request_verdict(policies, chat("apple", "gpt-4o", principal=Principal(app="billing", tenant="acme"))) == "allow"
    completion = Exchange("t", Endpoint.COMPLETIONS, body={"model": "gpt-4o", "prompt": "apple"}, model="gpt-4o")
    completion.principal = acme
    assert request_verdict(policies, completion) == "allow"


def test_limits_run_first_and_stop_the_text_checks(tmp_path: Path) -> None:
    policies = engine(tmp_path, sized="""
        rules:
          - {id: words, phase: request, check: {keywords: {words: [apple]}}, action: flag}
          - {id: bounds, phase: request, check: {limits: {max_messages: 1, parameters: {max_tokens: {max: 100}}}}, action: block}
    """)
    too_many = chat("apple", max_tokens=50)
    too_many.body["messages"].append({"role": "user", "content": "apple"})
    assert request_verdict(policies, too_many) == "block"
    assert [d.rule for d in too_many.decisions] == ["bounds"]  # the keyword rule never ran
    assert request_verdict(policies, chat("pear", max_tokens=500)) == "block"
    assert request_verdict(policies, chat("pear", max_tokens=True)) == "block"  # not a number
    assert request_verdict(policies, chat("pear", max_tokens=50)) == "allow"


def test_model_allow_and_deny_lists(tmp_path: Path) -> None:
    policies = engine(tmp_path, models="""
        rules:
          - {id: approved, phase: request, check: {models: {allow: ["gpt-4o*", "mock-*"], deny: ["gpt-4o-realtime*"]}}, action: block}
    """)
    assert request_verdict(policies, chat("hi", "gpt-4o-mini")) == "allow"
    assert request_verdict(policies, chat("hi", "gpt-4o-realtime-preview")) == "block"
    assert request_verdict(policies, chat("hi", "claude-3")) == "block"


def test_a_failing_check_blocks_by_default_and_is_degraded_when_open(tmp_path: Path) -> None:
    unreachable = "http://127.0.0.1:9/classify"
    closed = engine(tmp_path / "closed", hook=f"""
        rules:
          - {{id: classify, phase: request, check: {{webhook: {{url: "{unreachable}", timeout_ms: 200}}}}, action: block}}
    """)
    exchange = chat("anything")
    assert request_verdict(closed, exchange) == "block"  # no client at all here: the check errors
    assert [(d.action, d.verdict) for d in exchange.decisions] == [("block", "error")]
    opened = engine(tmp_path / "open", hook=f"""
        on_error: open
        rules:
          - {{id: classify, phase: request, check: {{webhook: {{url: "{unreachable}", timeout_ms: 200}}}}, action: block}}
    """)
    exchange = chat("anything")
    assert request_verdict(opened, exchange) == "allow"
    assert exchange.degraded and exchange.decisions[0].verdict == "error_open"


def test_a_thousand_pattern_rules_are_found_through_one_prefilter(tmp_path: Path) -> None:
    rules = "\n".join(f"  - {{id: word-{i}, phase: request, check: {{regex: {{pattern: 'token{i}x'}}}}, action: flag}}" for i in range(1000))
    policies = engine(tmp_path, big="rules:\n" + rules)
    assert policies.request_plan.prefilter is not None and len(policies.request_plan.prefiltered) == 1000
    exchange = chat("this has token17x and token999x but not token1000x")
    assert request_verdict(policies, exchange) == "flag"
    assert sorted(d.rule for d in exchange.decisions) == ["word-17", "word-999"]


def test_response_rules_judge_the_reply(tmp_path: Path) -> None:
    policies = engine(tmp_path, replies="""
        rules:
          - id: ticket
            phase: response
            check: {json_schema: {schema: {type: object, required: [ticket], properties: {ticket: {type: integer}}}}}
            action: block
    """)
    exchange = chat("open a ticket")
    assert asyncio.run(policies.check_response(exchange, reply('{"ticket": 12}'))).action == "allow"
    assert asyncio.run(policies.check_response(exchange, reply('{"ticket": "twelve"}'))).action == "block"
    assert asyncio.run(policies.check_response(exchange, reply("not json"))).action == "block"
    assert [d.detail for d in exchange.decisions] == ["choice 0: ticket: type failed", "choice 0: content is not JSON"]
