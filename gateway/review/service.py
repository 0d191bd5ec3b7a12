"""The review queue as the gateway uses it: parking escalated exchanges, waiting for a decision, recording
every decision, applying `on_timeout`, and answering apps and reviewers.

The store (gateway/review/store.py) keeps the state machine; this module adds what the state means to an
exchange: which error an undecided, rejected or timed-out review answers; who may carry out an allowed
one; that every end of a review is one `review_decision` audit record and a metric; and that held
content goes as soon as it is not needed (a rejected or timed-out review drops it at once, an allowed one
once its exchange was carried out).

Failure stance: a review that cannot be stored (the store is down) is never let through unreviewed; the
exchange answers 503 `review_unavailable` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from gateway.audit.record import RecordBuilder
from gateway.audit.writer import AuditSink
from gateway.config.model import ReviewConfig
from gateway.errors import Conflict, GatewayError, InvalidRequest, NotFound, ReviewPending, ReviewRejected, ReviewTimeout, ServiceUnavailable
from gateway.exchange import Endpoint, Exchange, Principal
from gateway.metrics import Metrics
from gateway.policy.model import Rule
from gateway.review.edits import EditRefused, edit_reply, edit_request
from gateway.review.store import DECISIONS, ReviewConflict, ReviewItem, ReviewNotFound, ReviewStore
from gateway.tasks import running

log = logging.getLogger(__name__)

DEADLINE_GRACE_S = 3.0  # a request waiting up to its review's deadline also waits for the sweeper to mark it
DEPTH_EVERY_S = 5.0  # queue depth metrics are refreshed this often per worker

CarryOut = Callable[[ReviewItem], Awaitable[dict[str, Any]]]


class ReviewService:
    def __init__(
        self, store: ReviewStore, audit: AuditSink, records: RecordBuilder, metrics: Metrics, config: ReviewConfig, *,
        policy_version: Callable[[], str], resume_lease_s: float,
    ) -> None:
        self.store = store
        self.audit = audit
        self.records = records
        self.metrics = metrics
        self.config = config
        self._policy_version = policy_version
        self._resume_lease_s = resume_lease_s
        self._pending_writes: set[asyncio.Task[None]] = set()
        self._draining = asyncio.Event()

    # -- the escalated exchange ---------------------------------------------------------------------------
    async def hold(self, exchange: Exchange, rule: Rule, phase: str, content: dict[str, Any]) -> ReviewItem:
        """Park the exchange and wait up to the rule's `wait_s`: the item, final or still open.

        Also records the review on the exchange (`exchange.review`), so its audit record names it.
        """
        review = rule.review
        assert review is not None, "the policy loader requires review: on escalate rules"
        now = time.time()
        item = ReviewItem.new(
            queue=review.queue, phase=phase, request_id=exchange.request_id, principal=exchange.principal.identity(),
            policy=rule.policy, rule=rule.id, policy_version=self._policy_version(), reason=_reason(exchange, rule, phase),
            content={"endpoint": exchange.endpoint.value if exchange.endpoint else None, **content},
            deadline=now + review.deadline_s, on_timeout=review.on_timeout, created=now,
        )
        try:
            await self.store.create(item)
        except Exception as exc:  # noqa: BLE001 - any store failure: the exchange must not go on unreviewed
            log.warning("review queue unavailable (%s: %s); refusing escalated exchange %s", type(exc).__name__, exc, exchange.request_id)
            raise ServiceUnavailable(
                "This request needs human review and the review queue is unavailable; try again later.", code="review_unavailable",
                policy=rule.policy, rule=rule.id,
            ) from None
        self.metrics.review_opened(item.queue, phase)
        exchange.review = item.audit_entry()  # named in the audit record even if the wait is cut short
        wait_s = review.wait_s if review.wait_s < review.deadline_s else review.deadline_s + DEADLINE_GRACE_S
        if wait_s > 0 and not self._draining.is_set():
            try:
                item = await self._wait(item, wait_s)
            except Exception as exc:  # noqa: BLE001 - the review is stored; the app can still fetch its outcome
                log.warning("review %s: waiting failed (%s: %s)", item.id, type(exc).__name__, exc)
        exchange.review = item.audit_entry()
        return item

    async def _wait(self, item: ReviewItem, wait_s: float) -> ReviewItem:
        """The item once decided, or as it is after `wait_s` or when the worker starts draining (a waiting
        request then answers review_pending at once instead of being cut off at the drain deadline)."""
        decided = asyncio.ensure_future(self.store.wait_decided(item.id, wait_s))
        draining = asyncio.ensure_future(self._draining.wait())
        try:
            await asyncio.wait((decided, draining), return_when=asyncio.FIRST_COMPLETED)
        finally:
            draining.cancel()
            if not decided.done():
                decided.cancel()
        return (decided.result() if decided.done() and not decided.cancelled() else None) or item

    def drain(self) -> None:
        """The worker is stopping: requests waiting for a decision answer review_pending now (their reviews
        stay in the queue, and the apps fetch the outcome from `GET /v1/reviews/{id}`)."""
        self._draining.set()

    async def take(self, item: ReviewItem, holder: str) -> bool:
        """Whether this request may carry out an allowed review's exchange itself (a concurrent poll of
        `GET /v1/reviews/{id}` may have started it first)."""
        return await self._lease(item.id, holder) is not None

    async def _lease(self, review_id: str, holder: str) -> ReviewItem | None:
        with _store_call(review_id):
            return await self.store.begin_resume(review_id, holder, self._resume_lease_s)

    def delivered(self, review_id: str, status: int) -> None:
        """The waiting request got its answer: mark the review done (and drop its content), off the request path."""
        task = asyncio.create_task(self._save(review_id, {"status": status, "delivered": True}), name="review-delivered")
        self._pending_writes.add(task)
        task.add_done_callback(self._pending_writes.discard)

    async def _save(self, review_id: str, result: dict[str, Any]) -> None:
        try:
            await self.store.save_result(review_id, result)
        except Exception as exc:  # noqa: BLE001 - retention removes the content anyway
            log.warning("review %s: result not stored (%s: %s)", review_id, type(exc).__name__, exc)

    # -- apps -------------------------------------------------------------------------------------------
    async def fetch(self, review_id: str, principal: Principal, carry_out: CarryOut, holder: str) -> ReviewItem:
        """The review as its own app may see it, carrying out an allowed exchange first if nobody has."""
        item = await self._get(review_id)
        if item.principal != principal.identity():
            raise _not_found(review_id)  # someone else's review does not exist, as far as this caller knows
        if item.allowed and item.result is None:
            taken = await self._lease(item.id, holder)
            if taken is not None:
                result = await carry_out(taken)
                with _store_call(item.id):
                    await self.store.save_result(item.id, result)
                item = await self._get(review_id)
        return item

    def app_view(self, item: ReviewItem) -> dict[str, Any]:
        """`GET /v1/reviews/{id}`: the state, the decision without the reviewer's name, and the outcome."""
        decision = item.decision or {}
        error = outcome_error(item)
        view: dict[str, Any] = {
            "id": item.id, "object": "review", "state": item.state, "queue": item.queue, "request_id": item.request_id,
            "created": item.created, "deadline": item.deadline,
            "decision": {"decision": decision["decision"], "comment": decision.get("comment", "")} if decision else None,
            "result": None, "error": None,
        }
        if item.result is not None:
            view["status"] = item.result.get("status")
            if item.result.get("delivered"):
                view["delivered"] = True  # the waiting request got it
            elif item.result.get("status") == 200:
                view["result"] = item.result.get("body")
            else:
                view["error"] = (item.result.get("body") or {}).get("error")
        elif error is not None and not isinstance(error, ReviewPending):
            view["error"] = error.payload(item.request_id)["error"]
        return view

    # -- reviewers --------------------------------------------------------------------------------------
    async def find(self, *, queue: str | None, state: str | None, min_age_s: float, limit: int) -> list[ReviewItem]:
        try:
            with _store_call():
                items = await self.store.list(queue=queue, state=state, limit=limit)
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="state", code="invalid_value") from None
        if min_age_s > 0:
            cutoff = time.time() - min_age_s
            items = [item for item in items if item.created <= cutoff]
        return items

    async def get(self, review_id: str) -> ReviewItem:
        return await self._get(review_id)

    async def claim(self, review_id: str, reviewer: str) -> ReviewItem:
        with _store_call(review_id):
            return await self.store.claim(review_id, reviewer, self.config.claim_lease_s)

    async def decide(self, review_id: str, reviewer: str, decision: str, comment: str, content: Any) -> ReviewItem:
        """A reviewer's decision: stored once, audited with their name, and the held content dropped when
        nothing will need it."""
        if decision not in DECISIONS:
            raise InvalidRequest("'decision' must be approve, reject or edit.", param="decision", code="invalid_value")
        if decision == "edit":
            if not isinstance(content, str):
                raise InvalidRequest("An edit needs 'content': the replacement text.", param="content", code="missing_field")
            _check_edit(await self._get(review_id), content)
        elif content is not None:
            raise InvalidRequest("'content' goes with an edit only.", param="content", code="invalid_value")
        with _store_call(review_id):
            item = await self.store.decide(review_id, reviewer, decision, comment, content)
        self._ended(item)
        if not item.allowed:
            with _store_call(review_id):
                await self.store.forget_content(item.id)
        return item

    # -- deadlines and metrics ----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The sweeper (on_timeout and queue depth) while the worker runs; pending result writes finish on exit."""
        async with running(self._sweep(), name="review-sweeper"):
            yield
        if self._pending_writes:
            await asyncio.gather(*self._pending_writes, return_exceptions=True)
        await self.store.close()

    async def _sweep(self) -> None:
        depth_at = 0.0
        while True:
            try:
                await self.sweep_once()
                if time.monotonic() - depth_at >= DEPTH_EVERY_S:
                    depth_at = time.monotonic()
                    self.metrics.review_depth(await self.store.depth())
            except Exception as exc:  # noqa: BLE001 - the store may be away; the next sweep retries
                log.warning("review sweeper: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.config.sweep_s)

    async def sweep_once(self) -> list[ReviewItem]:
        """Apply on_timeout to overdue reviews: each is expired by exactly one worker of all instances."""
        expired = await self.store.expire_due(time.time())
        for item in expired:
            self._ended(item)
            if item.on_timeout == "block":
                await self.store.forget_content(item.id)
        return expired

    def _ended(self, item: ReviewItem) -> None:
        """A review reached its end (a decision, or its deadline): one audit record and its metrics."""
        review = item.audit_entry()
        event = {
            "phase": item.phase, "policy": item.policy, "rule": item.rule, "escalated_under": item.policy_version,
            "principal": item.principal, "on_timeout": item.on_timeout, "waited_s": round(item.finished_at - item.created, 3),
        }
        record = self.records.event_record("review_decision", self._policy_version(), event, request_id=item.request_id, review=review)
        self.audit.submit(record)
        self.metrics.review_ended(item.queue, review["decision"], item.finished_at - item.created)

    async def _get(self, review_id: str) -> ReviewItem:
        with _store_call(review_id):
            item = await self.store.get(review_id)
        if item is None:
            raise _not_found(review_id)
        return item


@contextlib.contextmanager
def _store_call(review_id: str = "") -> Iterator[None]:
    """A store call as apps and reviewers see it: the store's refusals as 404 and 409 answers, a store that
    cannot be reached (Redis down) as a 503, never a traceback. Bad arguments (ValueError) pass through."""
    try:
        yield
    except ReviewNotFound:
        raise _not_found(review_id) from None
    except ReviewConflict as conflict:
        raise _conflict(conflict) from None
    except (ValueError, GatewayError):
        raise
    except Exception as exc:  # noqa: BLE001 - connection errors, timeouts: whatever the client library raises
        log.warning("review queue unavailable: %s: %s", type(exc).__name__, exc)
        raise ServiceUnavailable("The review queue is unavailable right now; try again shortly.", code="review_unavailable") from None


def outcome_error(item: ReviewItem) -> GatewayError | None:
    """The error an exchange behind this review answers, or None when it may go on."""
    if item.allowed:
        return None
    if item.state == "rejected":
        comment = (item.decision or {}).get("comment")
        error: GatewayError = ReviewRejected(f"A reviewer rejected this request{f': {comment}' if comment else '.'}")
    elif item.state == "expired":
        error = ReviewTimeout(f"No reviewer decided on this request before its deadline (queue {item.queue}).")
    else:
        error = ReviewPending(f"This request is held for human review (queue {item.queue}); fetch the outcome from GET /v1/reviews/{item.id}.")
    error.policy, error.rule, error.review_id = item.policy, item.rule, item.id
    return error


def reviewed_body(item: ReviewItem, held: dict[str, Any], phase: str) -> dict[str, Any]:
    """The held request or reply as the review left it: unchanged, or with the reviewer's edit."""
    decision = item.decision or {}
    if decision.get("decision") != "edit":
        return held
    endpoint = Endpoint(item.content.get("endpoint") or Endpoint.CHAT.value)
    text = str(decision.get("content", ""))
    return edit_reply(endpoint, held, text) if phase == "response" else edit_request(endpoint, held, text)


def _check_edit(item: ReviewItem, text: str) -> None:
    """Refuse an edit that could not be applied, before it is stored as the decision."""
    if not item.content:
        return  # final or forgotten: the store refuses the decision with the reason
    try:
        held = item.content.get("reply") if item.phase == "response" else item.content.get("request")
        endpoint = Endpoint(item.content.get("endpoint") or Endpoint.CHAT.value)
        (edit_reply if item.phase == "response" else edit_request)(endpoint, held or {}, text)
    except EditRefused as refused:
        raise InvalidRequest(f"This edit cannot be applied: {refused}.", param="content", code="invalid_edit") from None


def _reason(exchange: Exchange, rule: Rule, phase: str) -> str:
    """Why a human has to look: the escalating rule's finding, as the decision list recorded it."""
    for decision in reversed(exchange.decisions):
        if decision.rule == rule.id and decision.phase == phase:
            return decision.detail or rule.description or rule.message
    return rule.description or rule.message


def _not_found(review_id: str) -> NotFound:
    return NotFound(f"No review {review_id!r}.", code="review_not_found", param="id")


def _conflict(conflict: ReviewConflict) -> Conflict:
    return Conflict(f"{str(conflict)[0].upper()}{str(conflict)[1:]}.", code="review_conflict")
