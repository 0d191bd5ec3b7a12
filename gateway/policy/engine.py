"""The policy seam: what the pipeline asks of any policy engine, and the engine used with no policies.

The declarative engine (compiled `policies/*.yaml`) implements this same protocol. Evaluation is plain
synchronous code: it must never block, so it never needs to be `async`.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from gateway.exchange import Exchange
from gateway.providers.base import StreamEvent


class StreamGuard(Protocol):
    """Inspects a streamed reply event by event; returns the events to relay (possibly changed or held)."""

    def feed(self, event: StreamEvent) -> list[StreamEvent]: ...

    def finish(self) -> list[StreamEvent]:
        """Release whatever is still held back once the upstream stream ended."""


class PolicyEngine(Protocol):
    version: str

    def check_request(self, exchange: Exchange) -> None:
        """Records decisions on the exchange; may rewrite `exchange.body`; raises `PolicyViolation` to block."""

    def check_response(self, exchange: Exchange, reply: dict[str, Any]) -> dict[str, Any]:
        """Returns the reply to send (possibly rewritten); raises `PolicyViolation` to block."""

    def stream_guard(self, exchange: Exchange) -> StreamGuard | None:
        """A guard for this exchange's stream, or None when no rule inspects streamed replies."""


EMPTY_BUNDLE_VERSION = hashlib.sha256(b"").hexdigest()


class NoPolicies:
    """Allows everything and records nothing: the engine while no policy bundle is loaded."""

    version = EMPTY_BUNDLE_VERSION

    def check_request(self, exchange: Exchange) -> None:
        return None

    def check_response(self, exchange: Exchange, reply: dict[str, Any]) -> dict[str, Any]:
        return reply

    def stream_guard(self, exchange: Exchange) -> StreamGuard | None:
        return None
