"""The `webhook` check against a real classifier server: verdicts, scores, timeouts, garbage."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web

from gateway.testing.threads import LoopThread
from gateway.testing.upstream import FakeUpstream
from policy_support import write_policies
from support import audit_record_for, sdk_client


class Classifier:
    """A real HTTP classifier on 127.0.0.1 whose answer each test sets."""

    def __init__(self) -> None:
        self.answer: Any = {"fire": False}
        self.status = 200
        self.delay_s = 0.0
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/classify", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/classify"

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        self.headers.append(dict(request.headers))
        await asyncio.sleep(self.delay_s)
        body = self.answer if isinstance(self.answer, bytes) else orjson.dumps(self.answer)
        return web.Response(status=self.status, body=body, content_type="application/json")


@pytest.fixture
def classifier(server_loop: LoopThread) -> Iterator[Classifier]:
    service = Classifier()
    server_loop.run(service.start())
    yield service
    assert service.runner is not None
    server_loop.run(service.runner.cleanup())


def webhook_policy(url: str, extra: str = "", on_error: str = "closed") -> str:
    return f"""
        on_error: {on_error}
        rules:
          - id: classifier
            phase: request
            check: {{webhook: {{url: "{url}", timeout_ms: 300, headers: {{x-classifier-key: k1}}{extra}}}}}
            action: block
            message: The classifier refused this request.
    """


def ask(gateway: Any, content: str = "is this fine?") -> Any:
    with sdk_client(gateway) as client:
        return client.chat.completions.with_raw_response.create(model="gpt-test", messages=[{"role": "user", "content": content}])


def test_the_classifier_sees_the_text_and_its_verdict_is_enforced(make_gateway: Any, classifier: Classifier, tmp_path: Path, upstream: FakeUpstream) -> None:
    write_policies(tmp_path / "policies", hook=webhook_policy(classifier.url))
    gateway = make_gateway()
    assert ask(gateway).headers["x-gateway-decision"] == "allow"
    sent = classifier.received[-1]
    assert (sent["phase"], sent["model"], sent["app"], sent["texts"]) == ("request", "gpt-test", "anonymous", ["is this fine?"])
    assert classifier.headers[-1]["x-classifier-key"] == "k1"
    assert "Authorization" not in classifier.headers[-1]  # the client's credential goes nowhere
    classifier.answer = {"fire": True, "detail": "toxicity"}
    with pytest.raises(openai.PermissionDeniedError) as caught:
        ask(gateway)
    assert caught.value.response.json()["error"]["code"] == "classifier"
    record = audit_record_for(tmp_path / "store", caught.value.response.headers["x-request-id"])
    assert [(d["verdict"], d["detail"]) for d in record["decisions"]] == [("block", "toxicity")]


def test_a_score_is_judged_against_the_threshold(make_gateway: Any, classifier: Classifier, tmp_path: Path) -> None:
    write_policies(tmp_path / "policies", hook=webhook_policy(classifier.url, ", threshold: 0.7"))
    gateway = make_gateway()
    classifier.answer = {"score": 0.4}
    assert ask(gateway).headers["x-gateway-decision"] == "allow"
    classifier.answer = {"score": 0.9}
    with pytest.raises(openai.PermissionDeniedError):
        ask(gateway)


@pytest.mark.parametrize(
    "failure",
    [
        {"delay_s": 1.0},  # past timeout_ms
        {"status": 500},
        {"answer": b"<html>not json</html>"},
        {"answer": {"verdict": "ok"}},  # JSON, but not the contract
    ],
)
def test_a_failing_classifier_blocks_by_default(make_gateway: Any, classifier: Classifier, tmp_path: Path, failure: dict[str, Any]) -> None:
    write_policies(tmp_path / "policies", hook=webhook_policy(classifier.url))
    gateway = make_gateway()
    for name, value in failure.items():
        setattr(classifier, name, value)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        ask(gateway)
    record = audit_record_for(tmp_path / "store", caught.value.response.headers["x-request-id"])
    assert record["decisions"][0]["verdict"] == "error" and record["decisions"][0]["detail"].startswith("check failed: WebhookError")


def test_a_failing_classifier_with_on_error_open_lets_the_request_through_degraded(make_gateway: Any, classifier: Classifier, tmp_path: Path) -> None:
    write_policies(tmp_path / "policies", hook=webhook_policy(classifier.url, on_error="open"))
    gateway = make_gateway()
    classifier.delay_s = 1.0
    raw = ask(gateway)
    assert raw.headers["x-gateway-degraded"] == "true"
    record = audit_record_for(tmp_path / "store", raw.headers["x-request-id"])
    assert record["degraded"] is True and record["decisions"][0]["verdict"] == "error_open"
