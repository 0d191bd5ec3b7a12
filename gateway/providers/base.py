"""The provider protocol: the one small contract every model backend adapter implements.

Retries, fallbacks, breakers and metrics live above it, in the router; an adapter only turns one call
into one upstream exchange and maps its client library's failures to `gateway.errors` classes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.exchange import Endpoint

StreamEvent = dict[str, Any]


@dataclass(slots=True)
class UpstreamCall:
    """What the router asks a provider to do: the checked body, already re-targeted to the provider's model.

    Built once per request and never changed; not `frozen` only because that costs a setattr call per field.
    """

    endpoint: Endpoint
    body: dict[str, Any]
    request_id: str
    timeout_s: float  # the whole attempt, on top of the provider's connect/first-byte/idle timeouts


class UpstreamStream(Protocol):
    """An open streamed reply: parsed JSON events, in order, until the upstream's [DONE].

    Each item is the batch of events that arrived together (one network read), so the relay can forward
    them with one write: as soon as they arrive, but without a system call per event.
    """

    complete: bool
    """True once the upstream's [DONE] arrived: set before the last batch is handed out, so the relay can
    send that batch and the end of the stream in one write."""

    def __aiter__(self) -> AsyncIterator[list[StreamEvent]]: ...

    async def aclose(self) -> None:
        """Release the upstream connection; safe to call twice, and called on client disconnect."""


class Provider(Protocol):
    name: str

    async def send(self, call: UpstreamCall) -> dict[str, Any]:
        """One non-streamed call; returns the provider's JSON object or raises an `UpstreamError`."""

    async def open_stream(self, call: UpstreamCall) -> UpstreamStream:
        """Start a streamed call; returns once the upstream accepted it (so early failures are plain errors)."""

    async def close(self) -> None: ...
