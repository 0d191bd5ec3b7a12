"""The Exchange: one object per request that carries it through the pipeline and collects what happened.

Mutation rights (each stage writes only its own fields; everything else is read-only to it):

| stage            | may set                                                              |
| ---------------- | -------------------------------------------------------------------- |
| http front       | request_id, endpoint, body, body_bytes, model, stream, started       |
| auth             | principal                                                            |
| admission        | limit_headers, limit_keys; incident switches: decisions, decision, fell_back |
| request policy   | body (redaction), decisions, decision, degraded, redactions          |
| router           | route, attempts, target, upstream_s, fell_back                       |
| response policy  | decisions, decision, degraded (and the reply it is handed)           |
| review           | review, body (an edit), decision                                     |
| relay            | usage, stream_chunks, stream_parts, stopped                          |
| finish           | http_status, outcome, error                                          |

The audit record and the metrics are derived from the finished Exchange, never from handler locals.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.config.model import ModelRoute
from gateway.errors import GatewayError


class Endpoint(enum.Enum):
    """An OpenAI-compatible endpoint the gateway proxies; the value is its path below the base URL."""

    CHAT = "chat/completions"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"

    @property
    def streams(self) -> bool:
        return self is not Endpoint.EMBEDDINGS


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling. Auth sets it; policies and audit read it."""

    app: str = "anonymous"
    tenant: str | None = None
    sub: str | None = None
    roles: frozenset[str] = frozenset()
    claims: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)  # the rest of the token

    def identity(self) -> dict[str, str | None]:
        """Who it is, as audit records and review items keep it (roles and other claims are not kept)."""
        return {"app": self.app, "tenant": self.tenant, "sub": self.sub}

    def claim(self, name: str) -> tuple[str, ...]:
        """A claim's values as strings, for policy `match.claims` (app, tenant, sub and roles included)."""
        if name == "app":
            return (self.app,)
        if name in ("tenant", "sub"):
            value = getattr(self, name)
            return (value,) if value is not None else ()
        if name == "roles":
            return tuple(self.roles)
        value = self.claims.get(name)
        if value is None:
            return ()
        return tuple(str(item) for item in value) if isinstance(value, list) else (str(value),)


ANONYMOUS = Principal()


@dataclass(slots=True)
class Attempt:
    """One call to one target, as the router saw it (audit `route` entries)."""

    target: str
    status: int | None = None
    latency_ms: float = 0.0
    error: str | None = None


@dataclass(slots=True)
class Decision:
    """One rule that fired, in either phase (audit `decisions` entries)."""

    policy: str
    rule: str
    phase: str
    action: str
    mode: str = "enforce"
    verdict: str = ""
    detail: str = ""
    latency_us: float = 0.0
    # A staged rule's step (`monitor_until`, `rollout`, `enforce`; gateway/policy/stages.py); "" for every
    # other rule.
    step: str = ""


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(slots=True)
class Exchange:
    request_id: str
    endpoint: Endpoint | None  # None for requests that never reached a model endpoint (404s)
    body: dict[str, Any] = field(default_factory=dict)
    body_bytes: int = 0
    model: str = ""
    stream: bool = False
    started: float = field(default_factory=time.perf_counter)
    ts: float = field(default_factory=time.time)
    principal: Principal = ANONYMOUS
    route: ModelRoute | None = None
    target: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    decision: str = "allow"
    degraded: bool = False
    redactions: Any = None  # gateway.policy.redaction.Redactions once a rule redacted something
    upstream_s: float = 0.0
    fell_back: bool = False  # a policy re-routed it once already: a second fallback blocks instead
    policy_s: float = 0.0
    usage: Usage | None = None
    stream_chunks: int = 0
    stream_parts: list[str] = field(default_factory=list)  # streamed reply text as relayed, for audit
    response_body: bytes | None = None  # the serialised reply (non-streamed), for the audit digest
    limit_headers: dict[str, str] | None = None  # x-ratelimit-* for the response (admission)
    limit_keys: tuple[tuple[str, int], ...] = ()  # token counters to charge once usage is known (admission)
    stopped: GatewayError | None = None  # a response rule ended the stream midway
    review: dict[str, Any] | None = None  # the review an escalate rule opened: {id, queue, decision, reviewer, comment}
    http_status: int = 0
    outcome: str = "pending"
    error: GatewayError | None = None

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def stream_text(self) -> str:
        return "".join(self.stream_parts)
