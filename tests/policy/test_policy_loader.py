"""Loading policy files: every mistake is refused whole, with `file:line: key: problem`."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.policy.compiler import BundleRejected
from policy_support import compile_dir, policy_file, write_policies

GOOD_RULE = """
rules:
  - id: no-foo
    phase: request
    check: {keywords: {words: [foo]}}
    action: block
"""


def rejected(tmp_path: Path, spec: str, name: str = "broken") -> str:
    write_policies(tmp_path, **{name: spec})
    with pytest.raises(BundleRejected) as caught:
        compile_dir(tmp_path)
    return str(caught.value)


def test_a_good_policy_loads_with_its_rules(tmp_path: Path) -> None:
    compiled = compile_dir(write_policies(tmp_path, good=GOOD_RULE))
    (policy,) = compiled.policies.policies
    assert policy.name == "good"
    assert [rule.id for rule in policy.rules] == ["no-foo"]
    assert policy.rules[0].source == f"{tmp_path.name}/good.yaml:6"
    assert compiled.bundle.version == compiled.policies.version and len(compiled.bundle.version) == 64


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (GOOD_RULE + "colour: red\n", "broken.yaml:10: spec.colour: unknown key"),
        (GOOD_RULE.replace("action: block", "action: obliterate"), "spec.rules[0].action: must be one of allow, flag, redact, fallback, escalate, block"),
        (GOOD_RULE.replace("keywords: {words: [foo]}", "regex: {pattern: '(?<=x)foo'}"), "spec.rules[0].check.regex.pattern: not a valid RE2 pattern"),
        (GOOD_RULE.replace("keywords: {words: [foo]}", "regex: {pattern: 'a*'}"), "matches the empty string"),
        (GOOD_RULE.replace("keywords", "telepathy"), "spec.rules[0].check.telepathy: unknown check"),
        (GOOD_RULE.replace("phase: request", "phase: sideways"), "spec.rules[0].phase: must be request, response"),
        (GOOD_RULE.replace("action: block", "action: redact").replace("keywords: {words: [foo]}", "limits: {max_messages: 3}"), "a limits check finds no spans to redact"),
        (GOOD_RULE.replace("action: block", "action: escalate"), "an escalate rule needs review"),
        (GOOD_RULE.replace("action: block", "action: fallback"), "a fallback rule needs fallback"),
        (GOOD_RULE.replace("action: block", "action: block\n    restore: true"), "only a redact rule can restore"),
        (GOOD_RULE.replace("keywords: {words: [foo]}", "limits: {max_messages: 3}") + "    on_error: open\n", "limits always fail closed"),
        (GOOD_RULE.replace("phase: request", "phase: response").replace("keywords: {words: [foo]}", "json_schema: {schema: {type: object}}").replace("action: block", "action: block\n    stream: incremental"), "needs the whole response: set stream: buffer"),
        (GOOD_RULE.replace("phase: request", "phase: response").replace("action: block", "action: fallback\n    fallback: {model: other}"), "fallback on a streamed response needs the whole response"),
        (GOOD_RULE.replace("keywords: {words: [foo]}", "pii: {entities: [EMAIL, SHOE_SIZE]}"), "unknown 'SHOE_SIZE'"),
        (GOOD_RULE.replace("keywords: {words: [foo]}", "prompt_injection: {threshold: 0}"), "spec.rules[0].check.prompt_injection.threshold: must be greater than 0 and at most 1"),
        (GOOD_RULE.replace("keywords: {words: [foo]}", "models: {allow: [gpt-4o*]}").replace("phase: request", "phase: response"), "a models check cannot run in the response phase"),
        (GOOD_RULE.replace("keywords: {words: [foo]}", "json_schema: {file: schemas/missing.json}").replace("phase: request", "phase: response"), "'schemas/missing.json' is not a file of the policy directory"),
        ("rules: []\n", "spec.rules: a policy needs at least one rule"),
    ],
)
def test_mistakes_name_the_file_line_and_key(tmp_path: Path, spec: str, expected: str) -> None:
    message = rejected(tmp_path, spec)
    assert "broken.yaml:" in message
    assert expected in message


def test_api_version_and_kind_are_checked(tmp_path: Path) -> None:
    (tmp_path / "old.yaml").write_text(policy_file("old", GOOD_RULE).replace("gateway/v1", "gateway/v0"))
    with pytest.raises(BundleRejected, match=r"old.yaml:1: apiVersion: must be gateway/v1"):
        compile_dir(tmp_path)


def test_duplicate_rule_ids_across_files_are_refused(tmp_path: Path) -> None:
    write_policies(tmp_path, first=GOOD_RULE, second=GOOD_RULE)
    with pytest.raises(BundleRejected, match=r"second.yaml:6: id: rule id .no-foo. is already used at .*first.yaml:6"):
        compile_dir(tmp_path)


def test_duplicate_yaml_keys_and_syntax_errors_are_refused(tmp_path: Path) -> None:
    (tmp_path / "dup.yaml").write_text(policy_file("dup", GOOD_RULE) + "kind: Policy\n")
    with pytest.raises(BundleRejected, match=r"dup.yaml:\d+: .*duplicate key 'kind'"):
        compile_dir(tmp_path)
    (tmp_path / "dup.yaml").write_text("apiVersion: [unclosed\n")
    with pytest.raises(BundleRejected, match=r"dup.yaml:\d+:"):
        compile_dir(tmp_path)


def test_environment_references_stay_literal_in_policy_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_WORD", "banana")
    spec = GOOD_RULE.replace("keywords: {words: [foo]}", "regex: {pattern: '\\$\\{SECRET_WORD\\}'}")
    compiled = compile_dir(write_policies(tmp_path, literal=spec))
    (rule,) = compiled.policies.policies[0].rules
    assert rule.check.find("value ${SECRET_WORD} here")  # type: ignore[attr-defined]
    assert not rule.check.find("banana")  # type: ignore[attr-defined]


def test_fallback_models_are_checked_against_the_configured_routes(tmp_path: Path) -> None:
    spec = GOOD_RULE.replace("action: block", "action: fallback\n    fallback: {model: gpt-nowhere}")
    write_policies(tmp_path, routed=spec)
    with pytest.raises(BundleRejected, match=r"fallback.model: 'gpt-nowhere' is not a configured model"):
        compile_dir(tmp_path, known_models={"mock-gpt"})
    assert compile_dir(tmp_path).policies.rule_count == 1  # without a config there is nothing to check against


def test_a_policy_in_monitor_mode_makes_its_rules_monitor(tmp_path: Path) -> None:
    spec = "mode: monitor\n" + GOOD_RULE.replace("action: block", "action: block\n    mode: enforce")
    (rule,) = compile_dir(write_policies(tmp_path, shadow=spec)).policies.policies[0].rules
    assert rule.mode == "monitor"


def test_the_bundle_version_follows_the_content(tmp_path: Path) -> None:
    write_policies(tmp_path, good=GOOD_RULE)
    first = compile_dir(tmp_path).bundle.version
    assert compile_dir(tmp_path).bundle.version == first
    (tmp_path / "notes.txt").write_text("reviewed by secops")
    assert compile_dir(tmp_path).bundle.version != first
