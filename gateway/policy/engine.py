"""The policy seam: what the pipeline asks of a policy engine, and the engine used with no policies.

The declarative engine (`PolicySet`, compiled from `policies/*.yaml`) implements this protocol. Checks
are plain synchronous code; the phase methods are `async` only because a rule may ask an external
classifier (`webhook`), the one check that waits on I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gateway.exchange import Exchange
from gateway.policy.bundle import EMPTY_VERSION
from gateway.providers.base import StreamEvent

if TYPE_CHECKING:
    from gateway.policy.model import Rule


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a phase decided: the most restrictive enforced action, and the rule that decided it.

    `allow`, `flag` and `redact` let the exchange go on (redactions already applied); `block`,
    `escalate` and `fallback` are acted on by the pipeline (error, review queue, router).
    """

    action: str
    rule: Rule | None = None


ALLOW = Verdict("allow")


class StreamBlocked(Exception):
    """A response rule stopped a stream midway; the relay ends it with a content_filter chunk."""

    def __init__(
        self, verdict: Verdict, released: list[StreamEvent], *,
        reply: dict[str, Any] | None = None, release: Callable[[dict[str, Any]], list[StreamEvent]] | None = None,
    ) -> None:
        super().__init__(verdict.rule.id if verdict.rule else verdict.action)
        self.verdict = verdict
        self.released = released  # checked events still to send before the end of the stream
        # A buffered guard stopped the whole reply before sending any of it: the reply as judged, and how
        # to turn it (or a reviewer's edit of it) back into the held events, should a review allow it.
        self.reply = reply
        self.release = release


class StreamGuard(Protocol):
    """Inspects a streamed reply event by event; returns the events to relay (possibly changed or held)."""

    def feed(self, event: StreamEvent) -> list[StreamEvent]:
        """Raises `StreamBlocked` when an enforced rule blocks the stream."""

    def next_deadline(self) -> float | None:
        """When (time.monotonic()) held text must go out even if nothing more arrives; None if none is held."""

    def release_due(self) -> list[StreamEvent]:
        """The held text whose deadline passed, checked as it stands (may raise StreamBlocked)."""

    async def finish(self) -> list[StreamEvent]:
        """Release whatever is still held back once the upstream stream ended (may raise StreamBlocked)."""


class PolicyEngine(Protocol):
    version: str
    inspects_requests: bool  # False: the pipeline need not call check_request at all
    inspects_responses: bool  # False: nor check_response, unless a redaction must be restored

    async def check_request(self, exchange: Exchange) -> Verdict:
        """Records decisions on the exchange and may rewrite `exchange.body` (redaction)."""

    async def check_response(self, exchange: Exchange, reply: dict[str, Any]) -> Verdict:
        """Records decisions; may rewrite `reply` in place (redaction, restored placeholders)."""

    def stream_guard(self, exchange: Exchange) -> StreamGuard | None:
        """A guard for this exchange's stream, or None when nothing inspects or rewrites streamed replies."""


EMPTY_BUNDLE_VERSION = EMPTY_VERSION


class NoPolicies:
    """Allows everything and records nothing: the engine while no policy bundle is loaded."""

    version = EMPTY_BUNDLE_VERSION
    inspects_requests = False
    inspects_responses = False

    async def check_request(self, exchange: Exchange) -> Verdict:
        return ALLOW

    async def check_response(self, exchange: Exchange, reply: dict[str, Any]) -> Verdict:
        return ALLOW

    def stream_guard(self, exchange: Exchange) -> StreamGuard | None:
        return None
