"""`gateway policy diff`: a change review names every rule added, removed or changed, and how."""

from __future__ import annotations

import json
from pathlib import Path

from policy_support import write_policies
from support import run_gateway

OLD = """
mode: enforce
rules:
  - {id: no-apples, phase: request, check: {keywords: {words: [apple]}}, action: block}
  - {id: old-rule, phase: request, check: {pii: {}}, action: flag}
"""
NEW = """
mode: monitor
rules:
  - {id: no-apples, phase: request, check: {keywords: {words: [apple, pear]}}, action: redact}
  - {id: new-rule, phase: response, check: {secrets: {}}, action: redact}
"""


def test_diff_lists_added_removed_and_changed_rules(tmp_path: Path) -> None:
    write_policies(tmp_path / "old", fruit=OLD)
    write_policies(tmp_path / "new", fruit=NEW)
    result = run_gateway("policy", "diff", "old", "new", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "~ policy fruit" in lines and "    mode: 'enforce' -> 'monitor'" in lines
    assert any(line.startswith("+ fruit/new-rule: redact") for line in lines)
    assert "- fruit/old-rule" in lines
    assert "~ fruit/no-apples" in lines and "    action: 'block' -> 'redact'" in lines
    report = json.loads(run_gateway("policy", "diff", "old", "new", "--format", "json", cwd=tmp_path).stdout)
    assert report["changed"][0]["changes"]["check"]["new"] == {"keywords": {"words": ["apple", "pear"]}}


def test_diff_of_identical_bundles_says_so_and_broken_bundles_are_refused(tmp_path: Path) -> None:
    write_policies(tmp_path / "old", fruit=OLD)
    write_policies(tmp_path / "same", fruit=OLD)
    same = run_gateway("policy", "diff", "old", "same", cwd=tmp_path)
    assert same.stdout.splitlines()[-1] == "no rule or policy changes"
    write_policies(tmp_path / "broken", fruit=OLD.replace("action: block", "action: explode"))
    broken = run_gateway("policy", "diff", "old", "broken", cwd=tmp_path)
    assert broken.returncode == 1 and "fruit.yaml:" in broken.stderr
