"""The stage list every proxied request passes through, in order:

    auth -> admission (audit, route, rate limits, budgets) -> request policy -> upstream (router)
         -> response policy -> finish (audit record, metrics, token charges)

A policy verdict is acted on here, in one place (`_enforce`, or `_escalate`): allow, flag and redact go on; fallback
re-routes once through the router; block stops with the documented error; escalate parks the exchange in
the review queue and goes on, or stops, as the review decides (`_escalate`).

Each stage is a component with one job, handed in by the app factory; this module only sequences them
and keeps the Exchange's bookkeeping (timings, usage, outcome). A stage stops the exchange by raising a
`GatewayError`; `finish()` turns whatever happened into one audit record and one set of metrics.
An exchange whose review ends after its request stopped waiting is carried out later, for the app's
poll of `GET /v1/reviews/{id}` (`carry_out`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from multidict import CIMultiDictProxy

from gateway.audit.record import RecordBuilder
from gateway.audit.writer import AuditSink
from gateway.auth import Authenticator
from gateway.errors import GatewayError, PolicyViolation, ReviewPending, ServiceUnavailable
from gateway.exchange import Endpoint, Exchange, Principal, Usage
from gateway.ids import IdGenerator
from gateway.limits.limiter import Limiter
from gateway.metrics import Metrics
from gateway.policy.engine import ALLOW, PolicyEngine, StreamBlocked, StreamGuard, Verdict
from gateway.providers.base import StreamEvent, UpstreamStream
from gateway.providers.sse import DONE_EVENT, encode_event
from gateway.review.service import ReviewService, outcome_error, reviewed_body
from gateway.review.store import ReviewItem
from gateway.routing.incidents import IncidentGate
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
        limiter: Limiter | None = None,
        incidents: IncidentGate | None = None,
        reviews: ReviewService | None = None,
    ) -> None:
        self.auth = auth
        self.policy = policy  # one reference, swapped whole on policy reload
        self.router = router
        self.audit = audit
        self.records = records
        self.metrics = metrics
        self.ids = ids
        self._audit_fail_open = audit_fail_open
        self.limiter = limiter if limiter is not None and limiter.active else None
        self.reviews = reviews  # the review queue for escalate rules; without it, escalate blocks
        self.incidents = incidents if incidents is not None else IncidentGate(router, metrics)  # operators' incident switches

    # -- request phase --------------------------------------------------------------------------------
    def identify(self, exchange: Exchange, headers: CIMultiDictProxy[str]) -> None:
        """Auth, first of all: a caller without valid credentials learns nothing, not even a parse error."""
        exchange.principal = self.auth.authenticate(headers)

    async def admit(self, exchange: Exchange) -> None:
        """Admission and the request policy: everything decided before any provider is called."""
        if not self.audit.accepting():
            if not self._audit_fail_open:
                raise ServiceUnavailable("The audit trail is not accepting records; refusing new requests.", code="audit_unavailable")
            self.metrics.audit_backlogged_exchange()  # `on_unavailable: open`: served, and counted
        self.router.resolve(exchange)
        self.incidents.admit(exchange)  # an operator's block (503) or forced fallback, before limits, policy, provider
        if self.limiter is not None:
            await self.limiter.admit(exchange)  # rate limits and budgets: 429 before any check or provider
        policy = self.policy
        if not policy.inspects_requests:
            return
        started = time.perf_counter()
        try:
            verdict = await policy.check_request(exchange)
        finally:
            exchange.policy_s += time.perf_counter() - started
        if self._escalates(verdict):
            exchange.body = await self._escalate(exchange, verdict, "request", exchange.body)
        else:
            self._enforce(exchange, verdict)

    def _escalates(self, verdict: Verdict) -> bool:
        """Whether a verdict goes to the review queue (`_escalate`) rather than `_enforce`. A plain check,
        not an async wrapper around both: the common verdict should not pay for a coroutine."""
        return verdict.action == "escalate" and verdict.rule is not None and self.reviews is not None

    def _enforce(self, exchange: Exchange, verdict: Verdict) -> None:
        """Go on, re-route once (fallback), or stop with the documented error."""
        rule = verdict.rule
        if verdict.action in GOING_ON or rule is None:
            return
        if verdict.action == "fallback" and not exchange.fell_back and rule.fallback_model:
            self.router.fall_back(exchange, rule.fallback_model)
            exchange.fell_back = True
            return
        exchange.decision = "escalate" if verdict.action == "escalate" else "block"
        raise violation(verdict)

    async def _escalate(self, exchange: Exchange, verdict: Verdict, phase: str, held: dict[str, Any]) -> dict[str, Any]:
        """Park the exchange for a human and wait up to the rule's `wait_s`. An allowed review goes on here
        (carried out by this request, which the app is waiting on); anything else stops with its error."""
        assert self.reviews is not None and verdict.rule is not None
        exchange.decision = "escalate"
        content = {"request": exchange.body} if phase == "request" else {"request": exchange.body, "reply": held}
        item = await self.reviews.hold(exchange, verdict.rule, phase, content)
        error = outcome_error(item)
        if error is None and not await self.reviews.take(item, self.records.instance):
            error = ReviewPending(f"The reviewed request is being carried out for GET /v1/reviews/{item.id}; fetch it there.", review_id=item.id)
        if error is not None:
            raise error
        assert exchange.review is not None
        exchange.review["waited"] = True  # this request carries it out: the review's result is "delivered"
        return reviewed_body(item, held, phase)

    async def carry_out(self, item: ReviewItem) -> dict[str, Any]:
        """An allowed review's exchange, for the app's later `GET /v1/reviews/{id}`: the held reply, or the
        held request sent now (non-streamed; limits and response rules apply as to any request)."""
        if item.phase == "response":
            return {"status": 200, "body": reviewed_body(item, item.content["reply"], "response")}
        request = reviewed_body(item, item.content["request"], "request")
        exchange = Exchange(item.request_id, Endpoint(item.content["endpoint"]))
        exchange.body = {key: value for key, value in request.items() if key not in ("stream", "stream_options")}
        exchange.body_bytes = len(orjson.dumps(exchange.body))
        exchange.model = str(exchange.body.get("model", ""))
        principal = item.principal
        exchange.principal = Principal(app=principal.get("app") or "anonymous", tenant=principal.get("tenant"), sub=principal.get("sub"))
        exchange.review = {**item.audit_entry(), "carried_out": True}
        exchange.decision = "escalate"
        try:
            self.router.resolve(exchange)
            if self.limiter is not None:
                await self.limiter.admit(exchange)
            payload = await self.complete(exchange)
        except GatewayError as error:
            self.finish(exchange, error.status, "blocked" if isinstance(error, PolicyViolation) else "error", error)
            return {"status": error.status, "body": error.payload(exchange.request_id)}
        self.finish(exchange, 200, "ok")
        return {"status": 200, "body": orjson.loads(payload)}

    # -- upstream and response phase --------------------------------------------------------------------
    async def complete(self, exchange: Exchange) -> bytes:
        """A non-streamed exchange: the checked reply, serialised once."""
        reply = await self.router.send(exchange)
        verdict = await self._check_response(exchange, reply)
        if verdict.action == "fallback" and not exchange.fell_back:
            self._enforce(exchange, verdict)  # re-routes; the fallback's reply is checked like any other
            reply = await self.router.send(exchange)
            verdict = await self._check_response(exchange, reply)
        if self._escalates(verdict):
            reply = await self._escalate(exchange, verdict, "response", reply)
        else:
            self._enforce(exchange, verdict)
        exchange.usage = _usage_of(reply)
        payload = orjson.dumps(reply)
        exchange.response_body = payload
        return payload

    async def _check_response(self, exchange: Exchange, reply: dict[str, Any]) -> Verdict:
        if not self.policy.inspects_responses and exchange.redactions is None:
            return ALLOW
        started = time.perf_counter()
        try:
            return await self.policy.check_response(exchange, reply)
        finally:
            exchange.policy_s += time.perf_counter() - started

    async def open_stream(self, exchange: Exchange) -> UpstreamStream:
        return await self.router.open_stream(exchange)

    async def relay(self, exchange: Exchange, upstream: UpstreamStream) -> AsyncIterator[bytes]:
        """The client-bound SSE bytes of a stream, event by event as they arrive, ending with [DONE].

        Raises `GatewayError` midway when the upstream breaks; the caller ends the stream with an error
        event, since a response already started cannot become an error response. A response rule that
        stops the stream ends it here: a `content_filter` chunk, the error event, then [DONE].
        """
        guard = self.policy.stream_guard(exchange)
        batches = upstream.__aiter__()
        last: list[StreamEvent] = []
        first: StreamEvent | None = None
        next_batch: asyncio.Future[list[StreamEvent]] | None = None  # kept across hold-time wake-ups
        try:
            while True:
                waited = time.perf_counter()
                try:
                    deadline = guard.next_deadline() if guard is not None else None
                    if deadline is None and next_batch is None:
                        batch = await batches.__anext__()
                    else:
                        if next_batch is None:
                            next_batch = asyncio.ensure_future(batches.__anext__())
                        timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                        done, _ = await asyncio.wait((next_batch,), timeout=timeout)
                        if not done:  # held text reached its time bound before more arrived
                            assert guard is not None
                            due = self._guarded(exchange, guard, None)
                            if due:
                                yield b"".join([self._relayed(exchange, event) for event in due])
                            continue
                        batch, next_batch = next_batch.result(), None
                except StopAsyncIteration:
                    break
                finally:
                    exchange.upstream_s += time.perf_counter() - waited
                if first is None and batch:
                    first = batch[0]
                if guard is not None:
                    batch = self._guarded(exchange, guard, batch)
                if upstream.complete:  # the last batch: it goes out with the end of the stream, in one write
                    last = batch
                    break
                if batch:
                    yield b"".join([self._relayed(exchange, event) for event in batch])
            if guard is not None:
                started = time.perf_counter()
                try:
                    last.extend(await guard.finish())
                finally:
                    exchange.policy_s += time.perf_counter() - started
        except StreamBlocked as blocked:
            error = violation(blocked.verdict)
            if self._escalates(blocked.verdict) and blocked.release is not None:
                try:  # a `stream: buffer` rule escalated: nothing was sent yet; the review decides what is
                    reply = await self._escalate(exchange, blocked.verdict, "response", _completion(exchange, first, blocked.reply))
                    reviewed = blocked.release(reply)
                    yield b"".join([self._relayed(exchange, event) for event in (*last, *reviewed)]) + DONE_EVENT
                    return
                except GatewayError as refused:
                    error = refused
            exchange.stopped = error
            exchange.decision = "escalate" if blocked.verdict.action == "escalate" else "block"
            released = b"".join([self._relayed(exchange, event) for event in (*last, *blocked.released)])
            yield released + encode_event(_content_filter_chunk(exchange, first)) + b"data: " + error.body(exchange.request_id) + b"\n\n" + DONE_EVENT
            return
        finally:
            if next_batch is not None and not next_batch.done():
                next_batch.cancel()
        yield b"".join([self._relayed(exchange, event) for event in last]) + DONE_EVENT

    def _guarded(self, exchange: Exchange, guard: StreamGuard, batch: list[StreamEvent] | None) -> list[StreamEvent]:
        """The guard's verdict on a batch (or, with None, on text held past its time bound)."""
        started = time.perf_counter()
        checked: list[StreamEvent] = []
        try:
            if batch is None:
                checked.extend(guard.release_due())
            for event in batch or ():
                checked.extend(guard.feed(event))
        except StreamBlocked as blocked:
            blocked.released[:0] = checked  # what the guard passed before the block still goes out
            raise
        finally:
            exchange.policy_s += time.perf_counter() - started
        return checked

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
        if self.limiter is not None and any(attempt.status == 200 for attempt in exchange.attempts):
            self.limiter.charge(exchange)  # tokens, from the provider's usage (queued, never awaited)
        if exchange.review is not None and exchange.review.get("waited") and self.reviews is not None:
            self.reviews.delivered(exchange.review["id"], status)
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


GOING_ON = frozenset({"allow", "flag", "redact"})


def violation(verdict: Verdict) -> GatewayError:
    """The documented error for a verdict that stops an exchange (block, escalate, a second fallback)."""
    rule = verdict.rule
    if rule is None:
        return PolicyViolation("Blocked by policy.")
    message = rule.message or f"Blocked by policy {rule.policy}, rule {rule.id}."
    return PolicyViolation(message, code=rule.id, policy=rule.policy, rule=rule.id)


def _content_filter_chunk(exchange: Exchange, first: StreamEvent | None) -> StreamEvent:
    """The chunk that tells an SDK the reply was cut by a filter (OpenAI's own finish_reason for it)."""
    if exchange.endpoint is Endpoint.COMPLETIONS:
        return _like_stream(exchange, first, "text_completion", [{"index": 0, "text": "", "finish_reason": "content_filter"}])
    return _like_stream(exchange, first, "chat.completion.chunk", [{"index": 0, "delta": {}, "finish_reason": "content_filter"}])


def _completion(exchange: Exchange, first: StreamEvent | None, reply: dict[str, Any] | None) -> dict[str, Any]:
    """A buffered stream's reply as the non-streamed completion it stands for: what a reviewer judges, and
    what an app fetches once the review allows it."""
    choices = (reply or {}).get("choices") or ()
    if exchange.endpoint is Endpoint.COMPLETIONS:
        texts = [{"index": choice["index"], "text": choice.get("text", ""), "finish_reason": "stop"} for choice in choices]
        return _like_stream(exchange, first, "text_completion", texts)
    messages = [{"index": choice["index"], "message": choice["message"], "finish_reason": "stop"} for choice in choices]
    return _like_stream(exchange, first, "chat.completion", messages)


def _like_stream(exchange: Exchange, first: StreamEvent | None, kind: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
    """An object of `kind` with the stream's own id, created time and model (from its first event)."""
    first = first or {}
    return {"id": first.get("id", exchange.request_id), "object": kind, "created": first.get("created", int(exchange.ts)),
            "model": first.get("model", exchange.model), "choices": choices}


def _usage_of(reply: dict[str, Any]) -> Usage | None:
    usage = reply.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return Usage(prompt if isinstance(prompt, int) else 0, completion if isinstance(completion, int) else 0)
