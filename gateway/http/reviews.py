"""The review queue's HTTP surface: the app's view of its own review, and the reviewer API.

    GET  /v1/reviews/{id}                  the app that made the request: state, and the outcome once known
    GET  /admin/reviews                    reviewer: the queue, filtered by queue, state and age
    GET  /admin/reviews/{id}               reviewer: one item, with the held (already redacted) content
    POST /admin/reviews/{id}/claim         reviewer: a lease on the item (review.claim_lease_s)
    POST /admin/reviews/{id}/decision      reviewer: {"decision": approve|reject|edit, "comment", "content"}
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.errors import GatewayError, InvalidRequest
from gateway.exchange import Endpoint, Principal
from gateway.http.headers import reply_headers, request_error
from gateway.http.request_body import read_json_object
from gateway.http.roles import actor, guarded
from gateway.pipeline import Pipeline
from gateway.review.edits import edited_text
from gateway.review.service import ReviewService
from gateway.review.store import STATES, ReviewItem

MAX_LIST = 500


class ReviewHandlers:
    def __init__(self, pipeline: Pipeline, reviews: ReviewService) -> None:
        self.pipeline = pipeline
        self.reviews = reviews

    def routes(self) -> list[web.RouteDef]:
        pipeline = self.pipeline
        return [
            web.get("/v1/reviews/{id}", self.app_review),
            web.get("/admin/reviews", guarded(pipeline, self.list_reviews, "reviewer")),
            web.get("/admin/reviews/{id}", guarded(pipeline, self.show, "reviewer")),
            web.post("/admin/reviews/{id}/claim", guarded(pipeline, self.claim, "reviewer")),
            web.post("/admin/reviews/{id}/decision", guarded(pipeline, self.decide, "reviewer")),
        ]

    async def app_review(self, request: web.Request) -> web.Response:
        """The app's own review (anyone else's is a 404); an allowed one is carried out on first fetch."""
        try:
            principal = self.pipeline.auth.authenticate(request.headers)
            item = await self.reviews.fetch(request.match_info["id"], principal, self.pipeline.carry_out, self.pipeline.records.instance)
        except GatewayError as error:
            return request_error(request, self.pipeline, error)
        return web.json_response(self.reviews.app_view(item), dumps=_dumps, headers=reply_headers(request, self.pipeline))

    async def list_reviews(self, request: web.Request, _: Principal) -> web.Response:
        query = request.query
        state = query.get("state") or None
        if state is not None and state not in STATES:
            raise InvalidRequest(f"'state' must be one of {', '.join(sorted(STATES))}.", param="state", code="invalid_value")
        items = await self.reviews.find(
            queue=query.get("queue") or None, state=state,
            min_age_s=_number(query, "min_age_s", 0.0), limit=int(_number(query, "limit", 100, maximum=MAX_LIST)),
        )
        body = {"object": "list", "data": [summary(item) for item in items]}
        return web.json_response(body, dumps=_dumps, headers=reply_headers(request, self.pipeline))

    async def show(self, request: web.Request, _: Principal) -> web.Response:
        item = await self.reviews.get(request.match_info["id"])
        return web.json_response(detail(item), dumps=_dumps, headers=reply_headers(request, self.pipeline))

    async def claim(self, request: web.Request, principal: Principal) -> web.Response:
        item = await self.reviews.claim(request.match_info["id"], actor(principal, request))
        return web.json_response(detail(item), dumps=_dumps, headers=reply_headers(request, self.pipeline))

    async def decide(self, request: web.Request, principal: Principal) -> web.Response:
        body = await read_json_object(request)
        decision, comment = body.get("decision"), body.get("comment", "")
        if not isinstance(decision, str):
            raise InvalidRequest("'decision' is required: approve, reject or edit.", param="decision", code="missing_field")
        if not isinstance(comment, str):
            raise InvalidRequest("'comment' must be a string.", param="comment", code="invalid_type")
        item = await self.reviews.decide(request.match_info["id"], actor(principal, request), decision, comment[:2000], body.get("content"))
        return web.json_response(detail(item), dumps=_dumps, headers=reply_headers(request, self.pipeline))


def summary(item: ReviewItem) -> dict[str, Any]:
    """A queue entry: enough to pick an item, none of its content."""
    return {
        "id": item.id, "queue": item.queue, "state": item.state, "phase": item.phase, "request_id": item.request_id,
        "principal": item.principal, "policy": item.policy, "rule": item.rule, "reason": item.reason,
        "created": item.created, "deadline": item.deadline, "on_timeout": item.on_timeout,
        "claimed_by": item.claimed_by, "claim_expires": item.claim_expires, "deliveries": item.deliveries,
        "decision": item.decision,
    }


def detail(item: ReviewItem) -> dict[str, Any]:
    """One item for a reviewer: the summary, the policy version that escalated it, and the held content
    (as the gateway would forward it: request-phase redactions already applied)."""
    view = summary(item)
    view["policy_version"] = item.policy_version
    view["content"] = item.content
    endpoint = item.content.get("endpoint")
    view["edit_text"] = edited_text(item.content, Endpoint(endpoint), item.phase) if endpoint and not item.final else None
    view["result_stored"] = item.result is not None
    return view


def _number(query: Any, name: str, default: float, *, maximum: float | None = None) -> float:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be a number.", param=name, code="invalid_value") from None
    if value < 0 or (maximum is not None and value > maximum):
        raise InvalidRequest(f"'{name}' must be between 0 and {maximum if maximum is not None else 'any'}.", param=name, code="invalid_value")
    return value


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
