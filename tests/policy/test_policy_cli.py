"""`gateway policy check|test|explain|schema|sign|keygen` as a security team runs them in CI."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from policy_support import write_policies
from support import REPO, run_gateway, write_yaml

SHIPPED = REPO / "policies"

TESTED = """
rules:
  - {id: no-apple, phase: request, check: {keywords: {words: [apple]}}, action: block}
tests:
  - name: apples are blocked
    request: {model: mock-gpt, messages: [{role: user, content: an apple}]}
    expect: {action: block, rule: no-apple}
"""


def test_check_accepts_the_shipped_packs() -> None:
    result = run_gateway("policy", "check", str(SHIPPED), cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 5 policies")


def test_check_names_the_file_and_line_of_the_first_error(tmp_path: Path) -> None:
    write_policies(tmp_path / "p", broken=TESTED.replace("action: block", "action: nope", 1))
    result = run_gateway("policy", "check", "p", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("gateway: p/broken.yaml:6: spec.rules[0].action: must be one of")
    assert result.stderr.count("\n") == 1  # one line, no traceback


def test_the_shipped_packs_pass_their_own_tests() -> None:
    result = run_gateway("policy", "test", str(SHIPPED), cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout.splitlines()[-1]


def test_a_failing_expectation_fails_the_run_and_says_where(tmp_path: Path) -> None:
    write_policies(tmp_path / "p", fruit=TESTED.replace("expect: {action: block", "expect: {action: allow"))
    result = run_gateway("policy", "test", "p", cwd=tmp_path)
    assert result.returncode == 1
    assert "FAIL  fruit: apples are blocked" in result.stdout
    assert "fruit.yaml:" in result.stdout and "action: expected allow, got block" in result.stdout


def test_untested_rules_and_files_fail_the_run(tmp_path: Path) -> None:
    untested = TESTED.replace("rules:\n", "rules:\n  - {id: lonely, phase: request, check: {keywords: {words: [pear]}}, action: flag}\n")
    write_policies(tmp_path / "p", fruit=untested, bare="rules:\n  - {id: bare-rule, phase: request, check: {pii: {}}, action: flag}\n")
    result = run_gateway("policy", "test", "p", "--format", "json", cwd=tmp_path)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["tests"] == 1 and report["failed"] == 0 and not report["passed"]
    assert any("rule 'lonely' is not named by any test" in problem for problem in report["problems"])
    assert any("policy 'bare' has no tests" in problem for problem in report["problems"])


def test_explain_lists_what_applies_and_fires(tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"model": "mock-gpt", "messages": [{"role": "user", "content": "mail ann@example.com"}]}))
    result = run_gateway("policy", "explain", str(SHIPPED), "--request", str(request), cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "FIRES  pii-protection/mask-pii: pii -> redact  (EMAIL x1)" in result.stdout
    assert "quiet  secrets/no-secrets-in-prompts" in result.stdout
    assert result.stdout.rstrip().endswith("verdict: redact (rule mask-pii)")
    as_json = json.loads(run_gateway("policy", "explain", str(SHIPPED), "--request", str(request), "--format", "json", cwd=REPO).stdout)
    assert as_json["forwarded_body"]["messages"][0]["content"] == "mail [EMAIL_1]"


def test_the_schema_accepts_the_shipped_packs_and_catches_typos() -> None:
    result = run_gateway("policy", "schema", cwd=REPO)
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted(SHIPPED.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        assert not list(validator.iter_errors(document)), path
        document["spec"]["rules"][0]["acton"] = "block"
        assert list(validator.iter_errors(document)), f"{path}: a typo must not validate"


def test_keygen_sign_and_check_with_a_required_signature(tmp_path: Path) -> None:
    write_policies(tmp_path / "policies", fruit=TESTED)
    keygen = run_gateway("policy", "keygen", "secops.key", "secops.pub", cwd=tmp_path)
    assert keygen.returncode == 0, keygen.stderr
    key_id = keygen.stdout.split()[2].rstrip(":")
    write_yaml(tmp_path / "gateway.yaml", "models: {mock-gpt: {targets: [{provider: mock}]}}\nproviders: {mock: {kind: mock}}\npolicies: {require_signature: {keys: [secops.pub]}}\n")
    unsigned = run_gateway("policy", "check", cwd=tmp_path)
    assert unsigned.returncode == 1 and "bundle is not signed" in unsigned.stderr
    signed = run_gateway("policy", "sign", "--key", "secops.key", cwd=tmp_path)
    assert signed.returncode == 0, signed.stderr
    checked = run_gateway("policy", "check", cwd=tmp_path)
    assert checked.returncode == 0 and f"signed by {key_id}" in checked.stdout
