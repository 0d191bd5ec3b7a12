"""Escalate rules end to end: the openai SDK as the app, a reviewer on the admin API, a real fake upstream.

Hold mode (the request waits for the decision), async mode (403 review_pending, the app polls
`GET /v1/reviews/{id}`), reject, edit, each `on_timeout`, claim leases, streams, roles and the audit trail.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.testing.upstream import FakeUpstream, Reply
from review_support import Reviewer, app_review, error_of, escalate_policy, in_background
from support import audit_records_for, free_port, get, metric_sum, parse_metrics, read_audit, sdk_client, wait_until

REFUND = "please refund 900 dollars"


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    return tmp_path / "policies"


def ask(client: openai.OpenAI, text: str = REFUND, **options: Any) -> Any:
    return client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": text}], **options)


def pending_error(client: openai.OpenAI, text: str = REFUND) -> dict[str, Any]:
    with pytest.raises(openai.PermissionDeniedError) as raised:
        ask(client, text)
    return error_of(raised.value)


# -- hold mode -------------------------------------------------------------------------------------------
def test_hold_mode_approved_within_the_wait_gets_the_models_answer(
    make_gateway: Any, policy_dir: Path, upstream: FakeUpstream, store_dir: Path,
) -> None:
    escalate_policy(policy_dir, wait_s=20)
    gateway = make_gateway()
    reviewer = Reviewer(gateway.url)
    with sdk_client(gateway) as client:
        waiting = in_background(lambda: client.chat.completions.with_raw_response.create(
            model="gpt-test", messages=[{"role": "user", "content": REFUND}]))
        item = reviewer.wait_for_item(queue="finance", state="pending")
        assert upstream.received == []  # held before any provider saw it
        status, shown = reviewer.call("GET", f"/admin/reviews/{item['id']}")
        assert status == 200 and shown["content"]["request"]["messages"][0]["content"] == REFUND
        assert shown["rule"] == "big-refund" and shown["phase"] == "request" and len(shown["policy_version"]) == 64
        assert shown["edit_text"] == REFUND
        status, decided = reviewer.decide(item["id"], "approve", comment="customer verified")
        assert status == 200 and decided["state"] == "approved"
        raw = waiting.result(timeout=15)
    completion = raw.parse()
    assert completion.choices[0].message.content  # the fake upstream's echo
    assert raw.headers["x-gateway-decision"] == "escalate"
    assert len(upstream.received) == 1
    records = audit_records_for(store_dir, raw.headers["x-request-id"])
    exchange = next(record for record in records if record["kind"] == "exchange")
    assert exchange["review"]["id"] == item["id"] and exchange["review"]["decision"] == "approve"
    assert exchange["review"]["reviewer"] == "local@127.0.0.1" and exchange["http_status"] == 200
    decision = next(record for record in records if record["kind"] == "review_decision")
    assert decision["review"] == {"id": item["id"], "queue": "finance", "decision": "approve", "reviewer": "local@127.0.0.1", "comment": "customer verified"}
    assert decision["event"]["rule"] == "big-refund"
    # The waiting request got the answer: the app's poll says so, and the held prompt is gone from the store.
    done = wait_until(lambda: app_review(gateway.url, item["id"])[1] if app_review(gateway.url, item["id"])[1].get("delivered") else None)
    assert done["state"] == "approved" and done["result"] is None and done["decision"] == {"decision": "approve", "comment": "customer verified"}
    assert reviewer.call("GET", f"/admin/reviews/{item['id']}")[1]["content"] == {}


def test_hold_mode_reject_answers_review_rejected(make_gateway: Any, policy_dir: Path, upstream: FakeUpstream) -> None:
    escalate_policy(policy_dir, wait_s=20)
    gateway = make_gateway()
    reviewer = Reviewer(gateway.url)
    with sdk_client(gateway) as client:
        waiting = in_background(lambda: pending_error(client))
        item = reviewer.wait_for_item(state="pending")
        reviewer.decide(item["id"], "reject", comment="not eligible")
        error = waiting.result(timeout=15)
    assert error["type"] == "review_rejected" and error["code"] == "review_rejected"
    assert error["review_id"] == item["id"] and error["rule"] == "big-refund" and "not eligible" in error["message"]
    assert upstream.received == []
    assert reviewer.call("GET", f"/admin/reviews/{item['id']}")[1]["content"] == {}  # dropped at once


def test_edit_replaces_the_prompt_the_provider_sees(make_gateway: Any, policy_dir: Path, upstream: FakeUpstream) -> None:
    escalate_policy(policy_dir, wait_s=20)
    gateway = make_gateway()
    reviewer = Reviewer(gateway.url)
    with sdk_client(gateway) as client:
        waiting = in_background(lambda: ask(client))
        item = reviewer.wait_for_item(state="pending")
        status, refused = reviewer.decide(item["id"], "edit")  # an edit without the text
        assert status == 400 and refused["error"]["param"] == "content"
        status, _ = reviewer.decide(item["id"], "edit", comment="capped", content="please refund 100 dollars")
        assert status == 200
        waiting.result(timeout=15)
    assert upstream.received[0].body["messages"][0]["content"] == "please refund 100 dollars"


def test_response_phase_hold_edit_changes_the_answer(make_gateway: Any, policy_dir: Path, upstream: FakeUpstream) -> None:
    escalate_policy(policy_dir, word="contract", phase="response", wait_s=20)
    upstream.enqueue(Reply(body={"id": "x", "object": "chat.completion", "created": 1, "model": "fake-model",
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "per the contract, clause 7"}, "finish_reason": "stop"}]}))
    gateway = make_gateway()
    reviewer = Reviewer(gateway.url)
    with sdk_client(gateway) as client:
        waiting = in_background(lambda: ask(client, "what does it say?"))
        item = reviewer.wait_for_item(state="pending")
        shown = reviewer.call("GET", f"/admin/reviews/{item['id']}")[1]
        assert shown["phase"] == "response" and shown["edit_text"] == "per the contract, clause 7"
        reviewer.decide(item["id"], "edit", content="Please ask your account manager.")
        completion = waiting.result(timeout=15)
    assert completion.choices[0].message.content == "Please ask your account manager."
    assert len(upstream.received) == 1


# -- async mode ------------------------------------------------------------------------------------------
def test_async_mode_answers_pending_then_the_app_fetches_the_result(
    make_gateway: Any, policy_dir: Path, upstream: FakeUpstream, store_dir: Path,
) -> None:
    escalate_policy(policy_dir, wait_s=0)
    gateway = make_gateway()
    reviewer = Reviewer(gateway.url)
    with sdk_client(gateway) as client:
        error = pending_error(client)
    assert error["type"] == "review_pending" and error["review_id"]
    review_id = error["review_id"]
    assert upstream.received == []
    status, view = app_review(gateway.url, review_id)
    assert status == 200 and view["state"] == "pending" and view["result"] is None
    reviewer.decide(review_id, "approve")
    status, view = app_review(gateway.url, review_id)
    assert status == 200 and view["state"] == "approved"
    assert view["result"]["object"] == "chat.completion" and view["result"]["choices"][0]["message"]["content"]
    status, again = app_review(gateway.url, review_id)
    assert again["result"] == view["result"]
    assert len(upstream.received) == 1  # carried out once, however often the app polls
    assert "stream" not in upstream.received[0].body
    records = audit_records_for(store_dir, error["request_id"])
    kinds = sorted(record["kind"] for record in records)
    assert kinds == ["exchange", "exchange", "review_decision"]
    carried = [record for record in records if record["kind"] == "exchange" and record["http_status"] == 200]
    assert carried and carried[0]["review"]["carried_out"] is True


def test_async_reject_is_what_the_app_fetches(make_gateway: Any, policy_dir: Path, upstream: FakeUpstream) -> None:
    escalate_policy(policy_dir, wait_s=0)
    gateway = make_gateway()
    with sdk_client(gateway) as client:
        review_id = pending_error(client)["review_id"]
    Reviewer(gateway.url).decide(review_id, "reject", comment="no")
    status, view = app_review(gateway.url, review_id)
    assert status == 200 and view["state"] == "rejected" and view["result"] is None
    assert view["error"]["type"] == "review_rejected" and view["error"]["review_id"] == review_id
    assert upstream.received == []


def test_only_the_requesting_app_may_fetch_its_review(make_gateway: Any, policy_dir: Path) -> None:
    escalate_policy(policy_dir, wait_s=0)
    keys = {"auth": {"mode": "api_key", "api_keys": [
        {"sha256": _sha("sk-app-a"), "app": "app-a"},
        {"sha256": _sha("sk-app-b"), "app": "app-b"},
        {"sha256": _sha("sk-reviewer"), "app": "ann", "roles": ["reviewer"]},
    ]}}
    gateway = make_gateway(**keys)
    with sdk_client(gateway, api_key="sk-app-a") as client:
        review_id = pending_error(client)["review_id"]
    assert app_review(gateway.url, review_id, "sk-app-a")[0] == 200
    assert app_review(gateway.url, review_id, "sk-app-b")[0] == 404  # someone else's review does not exist
    assert app_review(gateway.url, review_id, "sk-reviewer")[0] == 404
    assert app_review(gateway.url, review_id)[0] == 401
    assert Reviewer(gateway.url, "sk-app-a").call("GET", "/admin/reviews")[0] == 403  # apps are not reviewers
    status, decided = Reviewer(gateway.url, "sk-reviewer").decide(review_id, "approve")
    assert status == 200 and decided["decision"]["reviewer"] == "ann"


# -- deadlines -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("on_timeout", ["block", "allow"])
def test_timeout_applies_on_timeout(make_gateway: Any, policy_dir: Path, upstream: FakeUpstream, store_dir: Path, on_timeout: str) -> None:
    escalate_policy(policy_dir, wait_s=1, deadline_s=1, on_timeout=on_timeout)
    gateway = make_gateway(review={"sweep_s": 0.1})
    with sdk_client(gateway) as client:
        if on_timeout == "block":
            error = pending_error(client)
            assert error["type"] == "review_timeout" and error["review_id"]
            assert upstream.received == []
            review_id = error["review_id"]
        else:
            raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=[{"role": "user", "content": REFUND}])
            assert raw.parse().choices[0].message.content and len(upstream.received) == 1
            review_id = audit_records_for(store_dir, raw.headers["x-request-id"])[0]["review"]["id"]
    view = app_review(gateway.url, review_id)[1]
    assert view["state"] == "expired"
    decisions = wait_until(lambda: [r for r in read_audit(store_dir) if r["kind"] == "review_decision"] or None)
    assert decisions[0]["review"]["decision"] == f"timeout_{on_timeout}" and decisions[0]["review"]["reviewer"] is None


def test_async_timeout_allow_is_carried_out_for_the_app(make_gateway: Any, policy_dir: Path, upstream: FakeUpstream) -> None:
    escalate_policy(policy_dir, wait_s=0, deadline_s=0.5, on_timeout="allow")
    gateway = make_gateway(review={"sweep_s": 0.1})
    with sdk_client(gateway) as client:
        review_id = pending_error(client)["review_id"]
    view = wait_until(lambda: app_review(gateway.url, review_id)[1] if app_review(gateway.url, review_id)[1]["state"] == "expired" else None)
    view = app_review(gateway.url, review_id)[1]
    assert view["result"]["choices"][0]["message"]["content"] and len(upstream.received) == 1


def test_claim_lease_expires_and_the_item_is_delivered_again(make_gateway: Any, policy_dir: Path) -> None:
    escalate_policy(policy_dir, wait_s=0)
    keys = {"auth": {"mode": "api_key", "api_keys": [
        {"sha256": _sha("sk-app"), "app": "app"},
        {"sha256": _sha("sk-ann"), "app": "ann", "roles": ["reviewer"]},
        {"sha256": _sha("sk-bob"), "app": "bob", "roles": ["reviewer"]},
    ]}}
    gateway = make_gateway(review={"claim_lease_s": 1}, **keys)
    with sdk_client(gateway, api_key="sk-app") as client:
        review_id = pending_error(client)["review_id"]
    ann, bob = Reviewer(gateway.url, "sk-ann"), Reviewer(gateway.url, "sk-bob")
    status, claimed = ann.call("POST", f"/admin/reviews/{review_id}/claim")
    assert status == 200 and claimed["state"] == "claimed" and claimed["claimed_by"] == "ann" and claimed["deliveries"] == 1
    status, refused = bob.call("POST", f"/admin/reviews/{review_id}/claim")
    assert status == 409 and "claimed by ann" in refused["error"]["message"]
    assert bob.decide(review_id, "approve")[0] == 409  # nor may bob decide it while ann holds it
    assert [item["id"] for item in bob.items(state="claimed")] == [review_id]
    time.sleep(1.1)  # ann walked away: the lease lapses
    status, again = bob.call("POST", f"/admin/reviews/{review_id}/claim")
    assert status == 200 and again["claimed_by"] == "bob" and again["deliveries"] == 2
    assert bob.decide(review_id, "approve")[0] == 200
    assert ann.decide(review_id, "reject")[0] == 409  # final


# -- streams -----------------------------------------------------------------------------------------------
def test_stream_request_held_then_streamed(make_gateway: Any, policy_dir: Path, upstream: FakeUpstream) -> None:
    escalate_policy(policy_dir, wait_s=20)
    gateway = make_gateway()
    reviewer = Reviewer(gateway.url)
    with sdk_client(gateway) as client:
        def stream_text() -> str:
            chunks = ask(client, stream=True)
            return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        waiting = in_background(stream_text)
        reviewer.decide(reviewer.wait_for_item(state="pending")["id"], "approve")
        assert waiting.result(timeout=15).startswith("w0 w1")


def test_buffered_stream_response_escalation(make_gateway: Any, policy_dir: Path, upstream: FakeUpstream) -> None:
    escalate_policy(policy_dir, word="secretplan", phase="response", wait_s=20, stream="buffer")
    upstream.enqueue(Reply(chunks=("the ", "secretplan ", "is ", "ready")), Reply(chunks=("the ", "secretplan")))
    gateway = make_gateway()
    reviewer = Reviewer(gateway.url)
    with sdk_client(gateway) as client:
        def stream_text() -> str:
            chunks = ask(client, "tell me", stream=True)
            return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        waiting = in_background(stream_text)
        item = reviewer.wait_for_item(state="pending")
        shown = reviewer.call("GET", f"/admin/reviews/{item['id']}")[1]
        assert shown["content"]["reply"]["object"] == "chat.completion"
        assert shown["content"]["reply"]["choices"][0]["message"]["content"] == "the secretplan is ready"
        reviewer.decide(item["id"], "edit", content="[withheld]")
        assert waiting.result(timeout=15) == "[withheld]"
        # Rejected: the stream ends with the content_filter chunk and the review error, nothing of the reply.
        waiting = in_background(lambda: list(ask(client, "again", stream=True)))
        second = wait_until(lambda: next((i for i in reviewer.items(state="pending") if i["id"] != item["id"]), None))
        reviewer.decide(second["id"], "reject")
        with pytest.raises(openai.APIError) as raised:
            waiting.result(timeout=15)
    assert "rejected" in str(raised.value.message).lower() or "review" in str(raised.value.body)


# -- metrics ---------------------------------------------------------------------------------------------
def test_review_metrics(make_gateway: Any, policy_dir: Path) -> None:
    escalate_policy(policy_dir, wait_s=0)
    gateway = make_gateway(review={"sweep_s": 0.1})
    with sdk_client(gateway) as client:
        first, second = pending_error(client)["review_id"], pending_error(client)["review_id"]
    Reviewer(gateway.url).decide(first, "approve")

    def scraped() -> Any:
        samples = parse_metrics(get(f"{gateway.url}/metrics").body.decode())
        return samples if metric_sum(samples, "gateway_review_queue_depth", queue="finance", state="pending") == 1 else None

    samples = wait_until(scraped, timeout=15)
    assert metric_sum(samples, "gateway_reviews_opened_total", queue="finance", phase="request") == 2
    assert metric_sum(samples, "gateway_review_decisions_total", queue="finance", decision="approve") == 1
    assert metric_sum(samples, "gateway_review_time_to_decision_seconds_count", queue="finance") == 1
    assert metric_sum(samples, "gateway_review_oldest_pending_seconds", queue="finance") >= 0
    assert second


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# -- the queue unreachable -----------------------------------------------------------------------------------
def test_an_unreachable_queue_never_lets_an_escalation_through(make_gateway: Any, policy_dir: Path, upstream: FakeUpstream, tmp_path: Path) -> None:
    escalate_policy(policy_dir, wait_s=5)
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    gateway = make_gateway(store={"backend": "redis", "redis_url": dead}, audit={"spool_dir": str(tmp_path / "spool")})
    with sdk_client(gateway) as client:
        with pytest.raises(openai.InternalServerError) as raised:
            ask(client)
        assert error_of(raised.value)["code"] == "review_unavailable" and raised.value.status_code == 503
        assert ask(client, "hello").choices[0].message.content  # exchanges that need no review go on
    assert len(upstream.received) == 1
    status, body = app_review(gateway.url, "0" * 24)
    assert status == 503 and body["error"]["code"] == "review_unavailable"
    status, body = Reviewer(gateway.url).call("GET", "/admin/reviews")
    assert status == 503 and body["error"]["code"] == "review_unavailable"


def test_a_draining_gateway_answers_waiting_requests_review_pending(
    make_gateway: Any, policy_dir: Path, server_loop: Any, upstream: FakeUpstream,
) -> None:
    escalate_policy(policy_dir, wait_s=120)
    gateway = make_gateway()
    reviewer = Reviewer(gateway.url)
    with sdk_client(gateway) as client:
        waiting = in_background(lambda: pending_error(client))
        item = reviewer.wait_for_item(state="pending")
        started = time.monotonic()
        stopping = in_background(lambda: server_loop.run(gateway.stop()))  # SIGTERM's drain, in process
        error = waiting.result(timeout=10)
        stopping.result(timeout=10)
    assert error["type"] == "review_pending" and error["review_id"] == item["id"]
    assert time.monotonic() - started < 4  # at once, not at the drain deadline (limits.drain_timeout_s: 5)
    assert upstream.received == []


def test_async_response_review_hands_over_the_held_answer(make_gateway: Any, policy_dir: Path, upstream: FakeUpstream) -> None:
    escalate_policy(policy_dir, word="contract", phase="response", wait_s=0)
    upstream.enqueue(*[Reply(body={"id": "x", "object": "chat.completion", "created": 1, "model": "fake-model",
                                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "see the contract"}, "finish_reason": "stop"}]})] * 2)
    gateway = make_gateway()
    reviewer = Reviewer(gateway.url)
    with sdk_client(gateway) as client:
        approved, edited = pending_error(client, "question one")["review_id"], pending_error(client, "question two")["review_id"]
    assert app_review(gateway.url, approved)[1]["result"] is None  # the answer is held, not shown
    reviewer.decide(approved, "approve")
    reviewer.decide(edited, "edit", content="Ask your account manager.")
    assert app_review(gateway.url, approved)[1]["result"]["choices"][0]["message"]["content"] == "see the contract"
    assert app_review(gateway.url, edited)[1]["result"]["choices"][0]["message"]["content"] == "Ask your account manager."
    assert len(upstream.received) == 2  # the provider answered once each; the fetches only hand the answer over


def test_reviewers_filter_the_queue_by_age_and_state(make_gateway: Any, policy_dir: Path) -> None:
    escalate_policy(policy_dir, wait_s=0)
    gateway = make_gateway()
    reviewer = Reviewer(gateway.url)
    with sdk_client(gateway) as client:
        old = pending_error(client)["review_id"]
        time.sleep(1.2)
        new = pending_error(client)["review_id"]
    assert [item["id"] for item in reviewer.items()] == [new, old]  # newest first
    assert [item["id"] for item in reviewer.items(min_age_s="1")] == [old]
    reviewer.decide(old, "reject")
    assert [item["id"] for item in reviewer.items(state="pending")] == [new]
    assert [item["id"] for item in reviewer.items(state="rejected", queue="finance")] == [old]
    assert reviewer.items(queue="legal") == []
    status, refused = reviewer.call("GET", "/admin/reviews?state=bogus")
    assert status == 400 and refused["error"]["param"] == "state"
    status, refused = reviewer.call("GET", "/admin/reviews?limit=-1")
    assert status == 400 and refused["error"]["param"] == "limit"
