"""`gateway policy diff OLD NEW`: what a policy change does, rule by rule, for change review.

Both bundles are validated first (a diff of a bundle that would not load is no review at all); the
comparison itself is over the files as written, so it names every key that changed (a pattern, an action,
a mode, a match block), not just that something did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.config.yaml_source import load_yaml_text
from gateway.policy.bundle import Bundle
from gateway.policy.loader import plain

_POLICY_KEYS = ("mode", "until", "rollout", "priority", "match", "on_error")  # `until`, `rollout`: staging of all its rules


@dataclass(slots=True)
class BundleDiff:
    old_version: str
    new_version: str
    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)  # policy-level changes (mode, match...)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.policies)

    def as_dict(self) -> dict[str, Any]:
        return {
            "old_version": self.old_version, "new_version": self.new_version, "added": self.added,
            "removed": self.removed, "changed": self.changed, "policies": self.policies,
        }


def _documents(bundle: Bundle) -> dict[str, dict[str, Any]]:
    """Policy name -> its document, plain dicts (the bundle has already passed validation)."""
    found = {}
    for file in bundle.policy_files():
        document = plain(load_yaml_text(file.data.decode("utf-8"), file.path))
        found[document["metadata"]["name"]] = document
    return found


def _rules(documents: dict[str, dict[str, Any]]) -> dict[str, tuple[str, dict[str, Any]]]:
    return {rule["id"]: (name, rule) for name, document in documents.items() for rule in document["spec"]["rules"]}


def _changes(old: dict[str, Any], new: dict[str, Any], keys: tuple[str, ...] | None = None) -> dict[str, dict[str, Any]]:
    names = keys if keys is not None else tuple(dict.fromkeys([*old, *new]))
    return {key: {"old": old.get(key), "new": new.get(key)} for key in names if old.get(key) != new.get(key)}


def diff_bundles(old: Bundle, new: Bundle) -> BundleDiff:
    result = BundleDiff(old.version, new.version)
    old_documents, new_documents = _documents(old), _documents(new)
    old_rules, new_rules = _rules(old_documents), _rules(new_documents)
    for rule_id in sorted(new_rules.keys() - old_rules.keys()):
        policy, rule = new_rules[rule_id]
        result.added.append({"policy": policy, "rule": rule_id, "definition": rule})
    for rule_id in sorted(old_rules.keys() - new_rules.keys()):
        policy, rule = old_rules[rule_id]
        result.removed.append({"policy": policy, "rule": rule_id, "definition": rule})
    for rule_id in sorted(old_rules.keys() & new_rules.keys()):
        (old_policy, old_rule), (new_policy, new_rule) = old_rules[rule_id], new_rules[rule_id]
        changes = _changes(old_rule, new_rule)
        if old_policy != new_policy:
            changes["policy"] = {"old": old_policy, "new": new_policy}
        if changes:
            result.changed.append({"policy": new_policy, "rule": rule_id, "changes": changes})
    for name in sorted(old_documents.keys() | new_documents.keys()):
        if name not in old_documents or name not in new_documents:
            result.policies.append({"policy": name, "change": "added" if name in new_documents else "removed"})
            continue
        changes = _changes(old_documents[name]["spec"], new_documents[name]["spec"], _POLICY_KEYS)
        if changes:
            result.policies.append({"policy": name, "change": "changed", "changes": changes})
    return result


def _mode_text(rule: dict[str, Any]) -> str:
    """An added rule's mode as written, with its staging: `monitor until 2025-07-01T00:00:00Z, rollout 10%`."""
    text = str(rule.get("mode", "policy mode"))
    if "until" in rule:
        text += f" until {rule['until']}"
    if isinstance(rule.get("rollout"), dict):
        text += f", rollout {rule['rollout'].get('percent')}%"
    return text


def describe(result: BundleDiff) -> list[str]:
    """The diff as a reviewer reads it, one line per rule (and per changed key)."""
    lines = [f"version {result.old_version[:12]} -> {result.new_version[:12]}"]
    if result.empty:
        return [*lines, "no rule or policy changes" + (" (other files differ)" if result.old_version != result.new_version else "")]
    for entry in result.policies:
        lines.append(f"{'+' if entry['change'] == 'added' else '-' if entry['change'] == 'removed' else '~'} policy {entry['policy']}")
        for key, values in entry.get("changes", {}).items():
            lines.append(f"    {key}: {values['old']!r} -> {values['new']!r}")
    for entry in result.added:
        rule = entry["definition"]
        lines.append(f"+ {entry['policy']}/{entry['rule']}: {rule.get('action')} on {rule.get('check')} ({_mode_text(rule)})")
    for entry in result.removed:
        lines.append(f"- {entry['policy']}/{entry['rule']}")
    for entry in result.changed:
        lines.append(f"~ {entry['policy']}/{entry['rule']}")
        for key, values in entry["changes"].items():
            lines.append(f"    {key}: {values['old']!r} -> {values['new']!r}")
    return lines
