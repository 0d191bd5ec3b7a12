"""Helpers for review-queue tests: escalate policies, a reviewer client of the admin API, and the app's poll."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import openai

from policy_support import write_policies
from support import get, raw_request, wait_until

T = TypeVar("T")


def escalate_policy(
    directory: Path, *, word: str = "refund", phase: str = "request", wait_s: float = 10, deadline_s: float | None = None,
    on_timeout: str = "block", queue: str = "finance", stream: str | None = None,
) -> Path:
    """One rule: a keyword escalates to `queue` (a second file of tests is not needed here)."""
    deadline = "" if deadline_s is None else f", deadline_s: {deadline_s}"
    stream = stream or ("buffer" if phase == "response" else None)  # the loader requires it for response escalation
    stream_line = f"\n    stream: {stream}" if stream else ""
    return write_policies(directory, review=f"""
rules:
  - id: big-refund
    phase: {phase}
    check: {{keywords: {{words: [{word}]}}}}
    action: escalate
    review: {{queue: {queue}, wait_s: {wait_s}{deadline}, on_timeout: {on_timeout}}}{stream_line}
""")


class Reviewer:
    """A reviewer using the admin API over real HTTP (JSON in, JSON out)."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {**self.headers, "Content-Type": "application/json"} if data is not None else self.headers
        response = raw_request(self.url + path, data, method=method, headers=headers)
        return response.status, response.json()

    def items(self, **query: str) -> list[dict[str, Any]]:
        path = "/admin/reviews" + ("?" + "&".join(f"{key}={value}" for key, value in query.items()) if query else "")
        status, body = self.call("GET", path)
        assert status == 200, body
        return list(body["data"])

    def wait_for_item(self, **query: str) -> dict[str, Any]:
        return wait_until(lambda: next(iter(self.items(**query)), None), what="a review item")

    def decide(self, review_id: str, decision: str, comment: str = "", content: str | None = None) -> tuple[int, Any]:
        body: dict[str, Any] = {"decision": decision, "comment": comment}
        if content is not None:
            body["content"] = content
        return self.call("POST", f"/admin/reviews/{review_id}/decision", body)


def app_review(url: str, review_id: str, token: str | None = None) -> tuple[int, Any]:
    """The app's poll of `GET /v1/reviews/{id}`."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = raw_request(f"{url}/v1/reviews/{review_id}", method="GET", headers=headers)
    return response.status, response.json()


def in_background(call: Callable[[], T]) -> concurrent.futures.Future[T]:
    """Run a blocking SDK call (a request waiting for its review) while the test acts as the reviewer."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(call)
    pool.shutdown(wait=False)
    return future


def error_of(error: openai.APIStatusError) -> dict[str, Any]:
    body = error.response.json()
    assert isinstance(body, dict)
    return dict(body["error"])


__all__ = ["Reviewer", "app_review", "error_of", "escalate_policy", "get", "in_background"]
