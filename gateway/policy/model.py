"""The compiled form of policy files: frozen objects built once per load and read by every request.

Nothing here parses YAML or compiles a pattern at request time: matchers are compiled regexes and
frozensets, checks are built objects, and the effective mode and error handling of every rule are
resolved when the bundle loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gateway.exchange import Endpoint, Exchange, Principal
from gateway.policy.checks import Check
from gateway.policy.stages import Stage

# Least to most restrictive: when several rules fire, the highest wins.
ACTIONS = ("allow", "flag", "redact", "fallback", "escalate", "block")
SEVERITY = {action: rank for rank, action in enumerate(ACTIONS)}
MODES = ("enforce", "monitor", "off")
PHASES = ("request", "response")
ON_ERROR = ("closed", "open")
STREAM_MODES = ("incremental", "buffer")


@dataclass(frozen=True, slots=True)
class Review:
    queue: str
    wait_s: float  # how long the request waits for a decision before it answers review_pending
    deadline_s: float  # how long the review stays open before on_timeout applies (>= wait_s)
    on_timeout: str  # block | allow


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    policy: str
    phases: frozenset[str]
    check: Check
    action: str
    mode: str  # effective: the stricter-to-apply of the policy's and the rule's (off > monitor > enforce)
    on_error: str  # effective: the rule's, else the policy's
    message: str
    priority: int
    order: int  # position in the bundle's evaluation order (priority, then file, then rule)
    source: str  # file:line, for explain and error messages
    restore: bool = False
    review: Review | None = None
    fallback_model: str | None = None
    stream: str = "incremental"
    description: str = ""
    stage: Stage | None = None  # staged rollout (`until`, `rollout`); then `mode` is "enforce", its final step

    @property
    def enforced(self) -> bool:
        return self.mode == "enforce"

    def mode_for(self, exchange: Exchange) -> tuple[str, str]:
        """This exchange's (mode, step): the rule's mode, or for a staged rule what its stage says now."""
        stage = self.stage
        return (self.mode, "") if stage is None else stage.at(self.id, exchange)


@dataclass(frozen=True, slots=True)
class Match:
    """Which exchanges a policy applies to; a field left out matches everything."""

    models: re.Pattern[str] | None = None
    apps: frozenset[str] | None = None
    claims: tuple[tuple[str, frozenset[str]], ...] = ()
    routes: re.Pattern[str] | None = None

    def applies(self, exchange: Exchange) -> bool:
        if self.models is not None and not self.models.match(exchange.model):
            return False
        principal = exchange.principal
        if self.apps is not None and principal.app not in self.apps:
            return False
        for name, allowed in self.claims:
            if allowed.isdisjoint(principal.claim(name)):
                return False
        if self.routes is not None:
            path = f"/v1/{exchange.endpoint.value}" if exchange.endpoint else ""
            if not self.routes.match(path):
                return False
        return True

    @property
    def everything(self) -> bool:
        return self.models is None and self.apps is None and not self.claims and self.routes is None


@dataclass(frozen=True, slots=True)
class Expectation:
    action: str | None = None
    rule: str | None = None
    fired: tuple[str, ...] = ()
    not_fired: tuple[str, ...] = ()
    upstream_contains: tuple[str, ...] = ()
    upstream_not_contains: tuple[str, ...] = ()
    response_contains: tuple[str, ...] = ()
    response_not_contains: tuple[str, ...] = ()
    status: int | None = None

    def names(self) -> set[str]:
        """The rule ids this expectation speaks about (what counts as a rule being tested)."""
        return {name for name in (self.rule, *self.fired, *self.not_fired) if name}


@dataclass(frozen=True, slots=True)
class PolicyTest:
    name: str
    source: str
    endpoint: Endpoint
    request: dict[str, Any]
    principal: Principal
    expect: Expectation
    upstream_reply: dict[str, Any] | None = None
    upstream_stream: tuple[str, ...] | None = None
    request_id: str | None = None  # pins staged rules' rollout side; else a fresh id per run
    at: float | None = None  # the exchange's time (unix seconds), pinning `until`; else now


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    owner: str
    description: str
    mode: str
    priority: int
    match: Match
    on_error: str
    rules: tuple[Rule, ...]
    tests: tuple[PolicyTest, ...] = field(default=())
    source: str = ""
