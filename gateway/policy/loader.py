"""Reads a policy bundle's YAML files into compiled `Policy` objects, or fails with `file:line: key`.

Everything a policy file can get wrong is found here, at load time: unknown keys, bad values, patterns RE2
cannot compile, schemas that are not schemas, actions a phase cannot take, rules without an id or with a
duplicate one. A bundle either loads whole or not at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway.config.reader import ConfigError, Section
from gateway.config.yaml_source import YamlError, load_yaml_text
from gateway.exchange import Endpoint, Principal
from gateway.policy.bundle import Bundle, BundleFile
from gateway.policy.checks import CHECKS
from gateway.policy.checks.shape import glob_matcher
from gateway.policy.model import (
    ACTIONS,
    MODES,
    ON_ERROR,
    PHASES,
    STREAM_MODES,
    Expectation,
    Match,
    Policy,
    PolicyTest,
    Review,
    Rule,
)
from gateway.policy.stages import Stage, parse_instant
from gateway.review.store import MAX_DEADLINE_S

API_VERSION = "gateway/v1"
_NAME = re.compile(r"[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?")
_RULE_ID = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?")
_ENDPOINTS = {f"/v1/{endpoint.value}": endpoint for endpoint in Endpoint}
DEFAULT_REVIEW_DEADLINE_S = 3600.0  # a review left undecided this long gets its on_timeout


class PolicyError(ValueError):
    """An invalid policy bundle; str() is one line naming the file, line and key."""


class PolicySection(Section):
    """Policy files are reviewed and signed as written: `${VAR}` is literal text there, never interpolated
    (a pattern may well contain it, and the environment must not change what a signed policy means)."""

    interpolate = False


def load_policies(bundle: Bundle) -> tuple[Policy, ...]:
    """Every policy of the bundle, in evaluation order (priority, then file path, then position)."""
    try:
        policies = [policy for file in bundle.policy_files() for policy in _load_file(bundle, file)]
    except (ConfigError, YamlError) as exc:
        raise PolicyError(str(exc)) from None
    _check_unique(policies)
    return tuple(sorted(policies, key=lambda policy: policy.priority))


def _source(bundle: Bundle, file: BundleFile) -> str:
    return f"{bundle.root.name}/{file.path}" if bundle.root.name else file.path


def _load_file(bundle: Bundle, file: BundleFile) -> list[Policy]:
    source = _source(bundle, file)
    try:
        text = file.data.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError(f"{source}: not valid UTF-8") from None
    data = load_yaml_text(text, source)
    if data is None:
        raise PolicyError(f"{source}: empty policy file")
    return [_policy(PolicySection(data, "", source), bundle, source)]


def _policy(root: Section, bundle: Bundle, source: str) -> Policy:
    api_version = root.string("apiVersion")
    if api_version != API_VERSION:
        root.fail("apiVersion", f"must be {API_VERSION} (got {api_version!r})")
    kind = root.string("kind")
    if kind != "Policy":
        root.fail("kind", f"must be Policy (got {kind!r})")
    metadata = root.section("metadata")
    name = metadata.string("name")
    if not _NAME.fullmatch(name):
        metadata.fail("name", f"must be lowercase letters, digits, '.', '-' or '_' (got {name!r})")
    owner = metadata.string("owner", "")
    description = metadata.string("description", "")
    metadata.finish()
    spec = root.section("spec")
    mode = spec.choice("mode", MODES, "enforce")
    schedule = _schedule(spec, mode if spec.has("mode") else None)
    priority = spec.integer("priority", 100, minimum=-(10**9))
    match = _match(spec.section("match"))
    on_error = spec.choice("on_error", ON_ERROR, "closed")
    entries = spec.sequence("rules")
    if not entries:
        spec.fail("rules", "a policy needs at least one rule")
    rules = tuple(
        _rule(PolicySection(entry, f"spec.rules[{index}]", source, spec.line), bundle, name, mode, on_error, priority, schedule)
        for index, entry in enumerate(entries)
    )
    tests = tuple(spec.items("tests", _test))
    spec.finish()
    root.finish()
    return Policy(name, owner, description, mode, priority, match, on_error, rules, tests, source)


def _match(section: Section) -> Match:
    models = glob_matcher(section, "models")
    apps = section.sequence("apps", None)
    if apps is not None and not all(isinstance(app, str) for app in apps):
        section.fail("apps", "must be a list of app names")
    claims = []
    claims_section = section.section("claims")
    for claim in list(claims_section.data):
        values = claims_section.sequence(str(claim))
        if not values or not all(isinstance(value, (str, int)) for value in values):
            claims_section.fail(str(claim), "must be a non-empty list of accepted values")
        claims.append((str(claim), frozenset(str(value) for value in values)))
    claims_section.finish()
    routes = glob_matcher(section, "routes")
    section.finish()
    return Match(models, frozenset(apps) if apps is not None else None, tuple(claims), routes)


def _rule(
    section: Section, bundle: Bundle, policy: str, policy_mode: str, policy_on_error: str, priority: int, policy_schedule: _Schedule,
) -> Rule:
    rule_id = section.string("id")
    if not _RULE_ID.fullmatch(rule_id):
        section.fail("id", f"must be letters, digits, '.', '-' or '_' (got {rule_id!r}); it becomes the error code")
    phases = _phases(section)
    check_section = section.section("check")
    if len(check_section.data) != 1:
        check_section.fail(None, f"must name exactly one check: {', '.join(CHECKS)}")
    kind = str(next(iter(check_section.data)))
    check_class = CHECKS.get(kind)
    if check_class is None:
        check_section.fail(kind, f"unknown check; known: {', '.join(CHECKS)}")
    check = check_class.build(check_section.section(kind), bundle)
    check_section.finish()
    for phase in phases - check_class.phases:
        section.fail("phase", f"a {kind} check cannot run in the {phase} phase")
    action = section.choice("action", ACTIONS)
    mode = section.choice("mode", MODES, policy_mode)
    effective_mode = max(policy_mode, mode, key=MODES.index)  # a policy switched off or to monitor wins
    effective_mode, stage = _stage(effective_mode, (policy_schedule, _schedule(section, mode if section.has("mode") else None)))
    on_error = section.choice("on_error", ON_ERROR, policy_on_error)
    if check_class.first and on_error == "open":
        section.fail("on_error", "limits always fail closed")
    message = section.string("message", "")
    restore = section.boolean("restore", False)
    if restore and action != "redact":
        section.fail("restore", "only a redact rule can restore")
    if action == "redact" and not check_class.redacts:
        section.fail("action", f"a {kind} check finds no spans to redact; use block, flag, fallback or escalate")
    review = _review(section.section("review")) if section.has("review") else None
    if (review is not None) != (action == "escalate"):
        section.fail("review" if review else "action", "an escalate rule needs review: {queue, wait_s, on_timeout}, and only it")
    fallback_model = None
    if section.has("fallback"):
        fallback = section.section("fallback")
        fallback_model = fallback.string("model")
        fallback.finish()
    if (fallback_model is not None) != (action == "fallback"):
        section.fail("fallback" if fallback_model else "action", "a fallback rule needs fallback: {model: ...}, and only it")
    stream = section.choice("stream", STREAM_MODES, "buffer" if check_class.needs_whole_reply else "incremental")
    if "response" in phases and stream == "incremental":
        if check_class.needs_whole_reply:
            section.fail("stream", f"a {kind} check needs the whole response: set stream: buffer")
        if action in ("escalate", "fallback"):
            section.fail("stream", f"{action} on a streamed response needs the whole response: set stream: buffer")
    description = section.string("description", "")
    source = f"{section.source}:{section.line}"
    section.finish()
    return Rule(
        rule_id, policy, phases, check, action, effective_mode, on_error, message, priority, 0, source,
        restore, review, fallback_model, stream, description, stage,
    )


@dataclass(frozen=True, slots=True)
class _Schedule:
    """One level's staging as written there (a policy's spec, or one rule): its own `mode`, `until`, `rollout`."""

    mode: str | None  # None: not written at this level
    until: float | None = None
    percent: float | None = None


def _schedule(section: Section, mode: str | None) -> _Schedule:
    """A level's `until` and `rollout`, checked against the `mode` written beside them: `until` ends a
    monitoring period, so it needs `mode: monitor` right there; a rollout needs a level that gets enforced."""
    until = None
    if section.has("until"):
        if mode != "monitor":
            section.fail("until", "needs mode: monitor beside it (monitored until then, enforced after)")
        try:
            until = parse_instant(section.value("until"))
        except ValueError as exc:
            section.fail("until", str(exc))
    percent = None
    if section.has("rollout"):
        rollout = section.section("rollout")
        percent = rollout.number("percent", minimum=-float("inf"))  # the range is checked below, with a better message
        if not 0 < percent < 100:
            rollout.fail("percent", f"must be greater than 0 and less than 100 (got {percent:g}); to enforce on every request, remove rollout")
        rollout.finish()
        if mode == "off" or (mode == "monitor" and until is None):
            section.fail("rollout", f"never applies with mode: {mode} here; roll out from enforce, or after monitor with until")
    return _Schedule(mode, until, percent)


def _stage(mode: str, levels: tuple[_Schedule, ...]) -> tuple[str, Stage | None]:
    """A rule's effective mode and stage from its policy's and its own staging; the stricter to apply wins,
    as for `mode` alone: off anywhere is off, monitor without `until` anywhere is monitor for good, else it
    is monitored until the latest `until`, then rolled out to the smallest percentage (if any), then enforced."""
    if mode == "off":
        return mode, None
    untils = [level.until for level in levels if level.mode == "monitor"]
    if None in untils:
        return "monitor", None
    until = max((moment for moment in untils if moment is not None), default=None)
    percent = min((level.percent for level in levels if level.percent is not None), default=None)
    if until is None and percent is None:
        return mode, None
    return "enforce", Stage(until, percent)


def _phases(section: Section) -> frozenset[str]:
    raw: Any = section.value("phase", None)
    phases = [raw] if isinstance(raw, str) else raw
    if not phases or not isinstance(phases, list) or not all(phase in PHASES for phase in phases):
        section.fail("phase", f"must be request, response or a list of them (got {raw!r})")
    return frozenset(phases)


def _review(section: Section) -> Review:
    queue = section.string("queue")
    if not queue.strip():
        section.fail("queue", "names the review queue and must not be empty")
    wait_s = float(section.number("wait_s", 30.0))
    deadline_s = float(section.number("deadline_s", max(wait_s, DEFAULT_REVIEW_DEADLINE_S)))
    if deadline_s < wait_s:
        section.fail("deadline_s", f"must be at least wait_s ({wait_s:g}): a request cannot wait past its review's end")
    if deadline_s > MAX_DEADLINE_S:
        section.fail("deadline_s", f"must be at most {MAX_DEADLINE_S:g} s (7 days)")
    review = Review(queue, wait_s, deadline_s, section.choice("on_timeout", ("block", "allow"), "block"))
    section.finish()
    return review


def _test(section: Section) -> PolicyTest:
    name = section.string("name")
    route = section.string("route", "/v1/chat/completions")
    endpoint = _ENDPOINTS.get(route)
    if endpoint is None:
        section.fail("route", f"must be one of {', '.join(_ENDPOINTS)} (got {route!r})")
    request = section.section("request").data
    if not isinstance(request.get("model"), str):
        section.fail("request", "needs a model")
    principal = _principal(section.section("principal"))
    reply = section.section("upstream_reply").data if section.has("upstream_reply") else None
    stream = section.sequence("upstream_stream", None)
    if stream is not None and not all(isinstance(chunk, str) for chunk in stream):
        section.fail("upstream_stream", "must be a list of text chunks")
    if reply is not None and stream is not None:
        section.fail("upstream_stream", "give upstream_reply or upstream_stream, not both")
    expect = _expectation(section.section("expect"))
    request_id = section.string("request_id", None)
    at = None
    if section.has("at"):
        try:
            at = parse_instant(section.value("at"))
        except ValueError as exc:
            section.fail("at", str(exc))
    source = f"{section.source}:{section.line}"
    section.finish()
    return PolicyTest(name, source, endpoint, plain(request), principal, expect, plain(reply) if reply is not None else None,
                      tuple(stream) if stream is not None else None, request_id, at)


def _principal(section: Section) -> Principal:
    app = section.string("app", "anonymous")
    tenant = section.string("tenant", None)
    sub = section.string("sub", None)
    roles = section.sequence("roles", [])
    claims = section.section("claims").data
    section.finish()
    return Principal(app, tenant, sub, frozenset(map(str, roles)), plain(claims))


def _expectation(section: Section) -> Expectation:
    def strings(key: str) -> tuple[str, ...]:
        value = section.value(key, ())
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, (list, tuple)) or not all(isinstance(item, str) for item in values):
            section.fail(key, "must be a string or a list of strings")
        return tuple(values)

    action = section.choice("action", ACTIONS, None)
    expectation = Expectation(
        action=action,
        rule=section.string("rule", None),
        fired=strings("fired"),
        not_fired=strings("not_fired"),
        upstream_contains=strings("upstream_contains"),
        upstream_not_contains=strings("upstream_not_contains"),
        response_contains=strings("response_contains"),
        response_not_contains=strings("response_not_contains"),
        status=section.integer("status", None, minimum=100),
    )
    section.finish()
    if expectation == Expectation():
        section.fail(None, "expects nothing; name an action, rule, fired rules or contents")
    return expectation


def plain(value: Any) -> Any:
    """YAML's line-tracking mappings as plain dicts, so a test request is an ordinary JSON body."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def _check_unique(policies: list[Policy]) -> None:
    names: dict[str, str] = {}
    rules: dict[str, str] = {}
    for policy in policies:
        if policy.name in names:
            raise PolicyError(f"{policy.source}: metadata.name: {policy.name!r} is also the name of a policy in {names[policy.name]}")
        names[policy.name] = policy.source
        for rule in policy.rules:
            if rule.id in rules:
                raise PolicyError(f"{rule.source}: id: rule id {rule.id!r} is already used at {rules[rule.id]}; ids are error codes, keep them unique")
            rules[rule.id] = rule.source
