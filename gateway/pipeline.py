"""The stage list every proxied request passes through, in order:

    auth -> admission -> route -> request policy -> upstream (router) -> response policy -> finish

Each stage is a component with one job, handed in by the app factory; this module only sequences them
and keeps the Exchange's bookkeeping (timings, usage, outcome). A stage stops the exchange by raising a
`GatewayError`; `finish()` turns whatever happened into one audit record and one set of metrics.
Review (escalate, park, resume) joins here as the outcome of the policy stages.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from multidict import CIMultiDictProxy

from gateway.audit.record import RecordBuilder
from gateway.audit.writer import AuditSink
from gateway.auth import Authenticator
from gateway.errors import GatewayError, ServiceUnavailable
from gateway.exchange import Exchange, Usage
from gateway.ids import IdGenerator
from gateway.metrics import Metrics
from gateway.policy.engine import PolicyEngine
from gateway.providers.base import StreamEvent, UpstreamStream
from gateway.providers.sse import DONE_EVENT, encode_event
from gateway.routing.router import Router


class Pipeline:
    def __init__(
        self,
        auth: Authenticator,
        policy: PolicyEngine,
        router: Router,
        audit: AuditSink,
        records: RecordBuilder,
        metrics: Metrics,
        ids: IdGenerator,
        *,
        audit_fail_open: bool,
    ) -> None:
        self.auth = auth
        self.policy = policy  # one reference, swapped whole on policy reload
        self.router = router
        self.audit = audit
        self.records = records
        self.metrics = metrics
        self.ids = ids
        self._audit_fail_open = audit_fail_open

    # -- request phase --------------------------------------------------------------------------------
    def admit(self, exchange: Exchange, headers: CIMultiDictProxy[str]) -> None:
        """Auth, admission and the request policy: everything decided before any provider is called."""
        exchange.principal = self.auth.authenticate(headers)
        if not self._audit_fail_open and not self.audit.accepting():
            raise ServiceUnavailable("The audit trail is not accepting records; refusing new requests.", code="audit_unavailable")
        self.router.resolve(exchange)
        started = time.perf_counter()
        try:
            self.policy.check_request(exchange)
        finally:
            exchange.policy_s += time.perf_counter() - started

    # -- upstream and response phase --------------------------------------------------------------------
    async def complete(self, exchange: Exchange) -> bytes:
        """A non-streamed exchange: the checked reply, serialised once."""
        reply = await self.router.send(exchange)
        started = time.perf_counter()
        try:
            reply = self.policy.check_response(exchange, reply)
        finally:
            exchange.policy_s += time.perf_counter() - started
        exchange.usage = _usage_of(reply)
        payload = orjson.dumps(reply)
        exchange.response_body = payload
        return payload

    async def open_stream(self, exchange: Exchange) -> UpstreamStream:
        return await self.router.open_stream(exchange)

    async def relay(self, exchange: Exchange, upstream: UpstreamStream) -> AsyncIterator[bytes]:
        """The client-bound SSE bytes of a stream, event by event as they arrive, ending with [DONE].

        Raises `GatewayError` midway when the upstream breaks; the caller ends the stream with an error
        event, since a response already started cannot become an error response.
        """
        guard = self.policy.stream_guard(exchange)
        batches = upstream.__aiter__()
        last: list[StreamEvent] = []
        while True:
            waited = time.perf_counter()
            try:
                batch = await batches.__anext__()
            except StopAsyncIteration:
                break
            finally:
                exchange.upstream_s += time.perf_counter() - waited
            if guard is not None:
                batch = [checked for event in batch for checked in guard.feed(event)]
            if upstream.complete:  # the last batch: it goes out with the end of the stream, in one write
                last = batch
                break
            if batch:
                yield b"".join([self._relayed(exchange, event) for event in batch])
        if guard is not None:
            last.extend(guard.finish())
        yield b"".join([self._relayed(exchange, event) for event in last]) + DONE_EVENT

    def _relayed(self, exchange: Exchange, event: StreamEvent) -> bytes:
        exchange.stream_chunks += 1
        usage = event.get("usage")
        if usage:
            exchange.usage = _usage_of(event)
        for choice in event.get("choices") or ():
            text = (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")
            if text:
                exchange.stream_parts.append(text)
        return encode_event(event)

    # -- finish -------------------------------------------------------------------------------------------
    def finish(self, exchange: Exchange, status: int, outcome: str, error: GatewayError | None = None) -> None:
        """Close the books on an exchange: exactly one audit record and one set of metrics, whatever happened."""
        exchange.http_status = status
        exchange.outcome = outcome
        exchange.error = error
        self.audit.submit(self.records.exchange_record(exchange, self.policy.version))
        self.metrics.exchange_finished(
            endpoint=exchange.endpoint.value if exchange.endpoint else "other",
            model=exchange.route.name if exchange.route else "unknown",  # never the client's free text
            status=status,
            decision=exchange.decision,
            total_s=exchange.elapsed_s(),
            upstream_s=exchange.upstream_s,
            provider=exchange.target.split("/", 1)[0] if exchange.target and exchange.attempts else None,
            stream_chunks=exchange.stream_chunks,
        )


def _usage_of(reply: dict[str, Any]) -> Usage | None:
    usage = reply.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return Usage(prompt if isinstance(prompt, int) else 0, completion if isinstance(completion, int) else 0)
