"""`gateway review ...` against a real gateway on a real port, with an escalate policy and the openai SDK as
the app: the CLI is a client of the reviewer API, so the server checks, applies and audits every decision;
failures are one line and exit 1, usage errors exit 2."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import openai
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "review"))  # review_support: the escalate policy

from gateway.auth.api_keys import key_digest  # noqa: E402
from gateway.cli import main  # noqa: E402
from gateway.cli.audit import describe as describe_record  # noqa: E402
from gateway.cli.review import STATE_CHOICES, age, describe, duration, table  # noqa: E402
from gateway.review.store import STATES  # noqa: E402
from gateway.testing.upstream import FakeUpstream, Reply  # noqa: E402
from review_support import error_of, escalate_policy, in_background  # noqa: E402
from support import cli_run, one_line, free_port, read_audit, run_gateway, sdk_client, wait_until  # noqa: E402

REFUND = "please refund 900 dollars"
LOCAL = "local@127.0.0.1"  # a reviewer with auth.mode none: the loopback caller (gateway.http.roles.actor)
APP_KEY, ANN_KEY, BOB_KEY = "gwk_review-app-0001", "gwk_review-ann-0002", "gwk_review-bob-0003"
KEYS = {"auth": {"mode": "api_key", "api_keys": [
    {"sha256": key_digest(APP_KEY), "app": "billing"},
    {"sha256": key_digest(ANN_KEY), "app": "ann", "roles": ["reviewer"]},
    {"sha256": key_digest(BOB_KEY), "app": "bob", "roles": ["reviewer"]},
]}}


@pytest.fixture(autouse=True)
def no_outside_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's own GATEWAY_URL, GATEWAY_TOKEN or GATEWAY_CONFIG must not steer these tests."""
    for name in ("GATEWAY_URL", "GATEWAY_TOKEN", "GATEWAY_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    return tmp_path / "policies"


def review_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return cli_run(capsys, "review", *args)


def ask(client: openai.OpenAI, text: str = REFUND) -> Any:
    return client.chat.completions.create(model="gpt-test", messages=[{"role": "system", "content": "You are the billing bot."}, {"role": "user", "content": text}])


def parked(client: openai.OpenAI, text: str = REFUND) -> str:
    """Async mode (wait_s 0): the app gets 403 review_pending at once; the review's id."""
    with pytest.raises(openai.PermissionDeniedError) as raised:
        ask(client, text)
    error = error_of(raised.value)
    assert error["type"] == "review_pending"
    return str(error["review_id"])


def listed(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> list[dict[str, Any]]:
    code, out, err = review_cli(capsys, "list", "--format", "json", "--url", url, *args)
    assert code == 0, err
    return list(json.loads(out)["data"])


def waiting_item(capsys: pytest.CaptureFixture[str], url: str) -> dict[str, Any]:
    """The pending item of a request that is waiting for its review (hold mode), as `list` shows it."""
    return wait_until(lambda: next(iter(listed(capsys, url, "--state", "pending")), None), what="a pending review item")


# -- list and show ---------------------------------------------------------------------------------------
def test_list_and_show_a_pending_item(make_gateway: Any, policy_dir: Path, upstream: FakeUpstream, capsys: pytest.CaptureFixture[str]) -> None:
    escalate_policy(policy_dir, wait_s=0)
    gateway = make_gateway()
    url = ["--url", gateway.url]
    with sdk_client(gateway) as client:
        first = parked(client)
        time.sleep(0.05)
        second = parked(client, "refund the other order too")

    code, out, _ = review_cli(capsys, "list", *url)
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "QUEUE", "STATE", "AGE", "RULE", "APP", "CLAIMED_BY"]
    assert [row.split()[0] for row in rows] == [second, first]  # newest first
    assert rows[1].split() == [first, "finance", "pending", rows[1].split()[3], "big-refund", "anonymous", "-"]
    assert rows[1].split()[3].endswith("s")

    data = listed(capsys, gateway.url)
    assert [item["id"] for item in data] == [second, first]
    assert data[1]["queue"] == "finance" and data[1]["state"] == "pending" and data[1]["rule"] == "big-refund"
    assert [item["id"] for item in listed(capsys, gateway.url, "--queue", "finance", "--state", "pending", "--limit", "1")] == [second]
    assert listed(capsys, gateway.url, "--queue", "legal") == []
    assert listed(capsys, gateway.url, "--state", "approved") == []
    assert listed(capsys, gateway.url, "--min-age", "1h") == []
    assert review_cli(capsys, "list", "--state", "rejected", *url)[:2] == (0, "no review items\n")

    code, out, _ = review_cli(capsys, "show", first, *url)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"review {first}  queue finance  pending  (request phase)"
    assert "  rule:        review/big-refund" in lines
    assert "  reason:      KEYWORD x1" in lines  # the rule's finding, as the decision list recorded it
    assert any(line.startswith("  policy:      version ") and len(line.split()[-1]) == 64 for line in lines)
    assert "  principal:   app anonymous, tenant -, sub -" in lines
    assert any(line.startswith("  deadline:    ") and "then on_timeout: block" in line for line in lines)
    assert "  decision:    none yet" in lines
    assert "held request (chat/completions, model gpt-test):" in lines
    assert lines[lines.index("held request (chat/completions, model gpt-test):") + 1:][:2] == [
        "  [system] You are the billing bot.", f"  [user] {REFUND}",
    ]
    assert f"`gateway review edit {first} --content ...` replaces the last user message." in lines

    code, out, _ = review_cli(capsys, "show", first, "--format", "json", *url)
    shown = json.loads(out)
    assert code == 0 and shown["id"] == first and shown["content"]["request"]["messages"][1]["content"] == REFUND
    assert shown["edit_text"] == REFUND and shown["policy"] == "review"
    assert upstream.received == []


# -- decisions -------------------------------------------------------------------------------------------
def test_approve_lets_the_waiting_request_get_the_models_answer(
    make_gateway: Any, policy_dir: Path, upstream: FakeUpstream, store_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    escalate_policy(policy_dir, wait_s=20)
    gateway = make_gateway()
    with sdk_client(gateway) as client:
        waiting = in_background(lambda: ask(client))
        item = waiting_item(capsys, gateway.url)
        assert upstream.received == []
        code, out, err = review_cli(capsys, "approve", item["id"], "--comment", "customer verified", "--url", gateway.url)
        assert (code, out, err) == (0, f"approved {item['id']} (finance) by {LOCAL}: customer verified\n", "")
        completion = waiting.result(timeout=15)
    assert completion.choices[0].message.content  # the fake upstream's answer
    assert len(upstream.received) == 1 and upstream.received[0].body["messages"][1]["content"] == REFUND
    decisions = wait_until(lambda: [r for r in read_audit(store_dir) if r["kind"] == "review_decision"] or None)
    assert decisions[0]["review"]["reviewer"] == LOCAL and decisions[0]["review"]["comment"] == "customer verified"

    code, _, err = review_cli(capsys, "reject", item["id"], "--url", gateway.url)  # a decision is final
    assert code == 1 and one_line(err) == (
        f"gateway: POST /admin/reviews/{item['id']}/decision: 409 review_conflict: Review {item['id']} is already approved."
    )
    code, out, _ = review_cli(capsys, "show", item["id"], "--url", gateway.url)
    assert code == 0 and f"  decision:    approve by {LOCAL} at " in out and ": customer verified" in out
    assert "held content: none" in out


def test_reject_gives_the_app_403_review_rejected(make_gateway: Any, policy_dir: Path, upstream: FakeUpstream, capsys: pytest.CaptureFixture[str]) -> None:
    escalate_policy(policy_dir, wait_s=20)
    gateway = make_gateway()
    with sdk_client(gateway) as client:
        def refused() -> dict[str, Any]:
            with pytest.raises(openai.PermissionDeniedError) as raised:
                ask(client)
            return error_of(raised.value)

        waiting = in_background(refused)
        item = waiting_item(capsys, gateway.url)
        code, out, _ = review_cli(capsys, "reject", item["id"], "--comment", "not eligible", "--url", gateway.url)
        assert (code, out) == (0, f"rejected {item['id']} (finance) by {LOCAL}: not eligible\n")
        error = waiting.result(timeout=15)
    assert error["type"] == "review_rejected" and error["review_id"] == item["id"] and "not eligible" in error["message"]
    assert upstream.received == []
    assert [found["id"] for found in listed(capsys, gateway.url, "--state", "rejected")] == [item["id"]]


def test_edit_changes_what_the_provider_receives(make_gateway: Any, policy_dir: Path, upstream: FakeUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    escalate_policy(policy_dir, wait_s=20)
    gateway = make_gateway()
    text = tmp_path / "edit.txt"
    text.write_text("please refund 100 dollars\n", encoding="utf-8")  # as an editor saves it
    with sdk_client(gateway) as client:
        waiting = in_background(lambda: ask(client))
        item = waiting_item(capsys, gateway.url)
        code, out, _ = review_cli(capsys, "edit", item["id"], "--content-file", str(text), "--comment", "capped", "--url", gateway.url)
        assert (code, out) == (0, f"edited {item['id']} (finance) by {LOCAL}: capped\n")
        waiting.result(timeout=15)
    assert upstream.received[0].body["messages"] == [
        {"role": "system", "content": "You are the billing bot."}, {"role": "user", "content": "please refund 100 dollars"},
    ]
    code, out, _ = review_cli(capsys, "show", item["id"], "--url", gateway.url)
    assert code == 0 and f"  decision:    edit by {LOCAL} at " in out and ": capped" in out
    assert "held content: none" in out  # the edit's text went with the held prompt once the exchange was carried out


def test_response_phase_show_prints_the_held_reply_and_edit_replaces_it(
    make_gateway: Any, policy_dir: Path, upstream: FakeUpstream, capsys: pytest.CaptureFixture[str],
) -> None:
    escalate_policy(policy_dir, word="contract", phase="response", wait_s=20)
    upstream.enqueue(Reply(body={"id": "x", "object": "chat.completion", "created": 1, "model": "fake-model",
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "per the contract,\nclause 7"}, "finish_reason": "stop"}]}))
    gateway = make_gateway()
    with sdk_client(gateway) as client:
        waiting = in_background(lambda: ask(client, "what does it say?"))
        item = waiting_item(capsys, gateway.url)
        code, out, _ = review_cli(capsys, "show", item["id"], "--url", gateway.url)
        lines = out.splitlines()
        assert code == 0 and lines[0].endswith("(response phase)")
        assert "  [user] what does it say?" in lines
        reply = lines.index("held reply (model fake-model):")
        assert lines[reply + 1:reply + 3] == ["  [assistant] per the contract,", "              clause 7"]
        assert f"`gateway review edit {item['id']} --content ...` replaces the answer (the first choice)." in lines
        code, out, _ = review_cli(capsys, "edit", item["id"], "--content", "Please ask your account manager.", "--url", gateway.url)
        assert (code, out) == (0, f"edited {item['id']} (finance) by {LOCAL}\n")
        completion = waiting.result(timeout=15)
    assert completion.choices[0].message.content == "Please ask your account manager."


# -- claims, roles and refusals --------------------------------------------------------------------------------
def test_a_claimed_item_is_refused_to_another_reviewer(make_gateway: Any, policy_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    escalate_policy(policy_dir, wait_s=0)
    gateway = make_gateway(**KEYS)
    url = ["--url", gateway.url]
    with sdk_client(gateway, api_key=APP_KEY) as client:
        review_id = parked(client)

    code, out, _ = review_cli(capsys, "claim", review_id, "--token", ANN_KEY, *url)
    assert code == 0 and out.startswith(f"claimed {review_id} (finance) by ann until ") and out.endswith("Z\n")
    code, _, err = review_cli(capsys, "claim", review_id, "--token", BOB_KEY, *url)
    assert code == 1 and one_line(err) == f"gateway: POST /admin/reviews/{review_id}/claim: 409 review_conflict: Review {review_id} is claimed by ann."
    code, _, err = review_cli(capsys, "approve", review_id, "--token", BOB_KEY, *url)
    assert code == 1 and one_line(err).endswith(f"409 review_conflict: Review {review_id} is claimed by ann.")

    code, out, _ = review_cli(capsys, "list", "--state", "claimed", "--token", BOB_KEY, *url)
    assert code == 0 and out.splitlines()[1].split()[0] == review_id and out.splitlines()[1].split()[-2:] == ["billing", "ann"]
    code, out, _ = review_cli(capsys, "show", review_id, "--token", BOB_KEY, *url)
    assert code == 0 and "  claimed by:  ann (lease until " in out and "  principal:   app billing, tenant -, sub billing" in out.splitlines()

    code, _, err = review_cli(capsys, "list", "--token", APP_KEY, *url)  # an app is not a reviewer
    assert code == 1 and one_line(err) == "gateway: GET /admin/reviews: 403 reviewer_required: This endpoint needs the reviewer role."
    code, _, err = review_cli(capsys, "approve", review_id, "--token", APP_KEY, *url)
    assert code == 1 and one_line(err).endswith("403 reviewer_required: This endpoint needs the reviewer role.")
    code, _, err = review_cli(capsys, "list", *url)
    assert code == 1 and one_line(err).startswith("gateway: GET /admin/reviews: 401 ")

    assert review_cli(capsys, "approve", review_id, "--token", ANN_KEY, *url)[:2] == (0, f"approved {review_id} (finance) by ann\n")


def test_an_unknown_id_exits_1_with_the_servers_message(make_gateway: Any, capsys: pytest.CaptureFixture[str]) -> None:
    gateway = make_gateway()
    url = ["--url", gateway.url]
    for args, method, action in ((["show"], "GET", ""), (["claim"], "POST", "/claim"), (["approve"], "POST", "/decision"),
                                 (["edit", "--content", "x"], "POST", "/decision")):
        code, out, err = review_cli(capsys, *args, "0123456789abcdef01234567", *url)
        assert code == 1 and out == ""
        assert one_line(err) == f"gateway: {method} /admin/reviews/0123456789abcdef01234567{action}: 404 review_not_found: No review '0123456789abcdef01234567'."
    code, _, err = review_cli(capsys, "show", "a/../b", *url)  # quoted into one path segment
    assert code == 1 and "404 review_not_found: No review 'a/../b'." in one_line(err)


def test_an_unreachable_gateway_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens there
    for args in (["list"], ["approve", "abc"]):
        code, _, err = review_cli(capsys, *args, "--url", f"http://127.0.0.1:{port}")
        assert code == 1
        assert one_line(err) == f"gateway: cannot reach the gateway at http://127.0.0.1:{port}: connection refused (is it running? set --url or $GATEWAY_URL)"


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["approve"], ["edit", "abc"], ["edit", "abc", "--content", "x", "--content-file", "f"], ["list", "--state", "open"],
                 ["list", "--min-age", "soon"], ["list", "--limit", "many"], ["show", "abc", "--format", "yaml"], ["decide", "abc"], []):
        with pytest.raises(SystemExit) as caught:
            main(["review", *args])
        assert caught.value.code == 2, args
    assert "usage: gateway review" in capsys.readouterr().err


def test_an_unreadable_content_file_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = review_cli(capsys, "edit", "abc", "--content-file", str(tmp_path / "missing.txt"), "--url", "http://127.0.0.1:1")
    assert code == 1 and one_line(err).startswith("gateway: No such file or directory")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    code, _, err = review_cli(capsys, "edit", "abc", "--content-file", str(tmp_path / "latin1.txt"), "--url", "http://127.0.0.1:1")
    assert code == 1 and one_line(err) == f"gateway: {tmp_path / 'latin1.txt'}: not UTF-8 text"


def test_the_command_as_a_process(make_gateway: Any, policy_dir: Path, tmp_path: Path) -> None:
    """`python -m gateway review ...` as a reviewer runs it, with the URL from $GATEWAY_URL."""
    escalate_policy(policy_dir, wait_s=0)
    gateway = make_gateway()
    with sdk_client(gateway) as client:
        review_id = parked(client)
    env = {"GATEWAY_URL": gateway.url, "GATEWAY_TOKEN": ""}
    result = run_gateway("review", "list", cwd=tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split()[:3] == [review_id, "finance", "pending"]
    result = run_gateway("review", "approve", review_id, cwd=tmp_path, **env)
    assert (result.returncode, result.stdout) == (0, f"approved {review_id} (finance) by {LOCAL}\n")
    result = run_gateway("review", "approve", review_id, cwd=tmp_path, **env)
    assert result.returncode == 1 and result.stderr.strip().endswith(f"409 review_conflict: Review {review_id} is already approved.")


# -- formatting --------------------------------------------------------------------------------------------
def test_the_state_choices_are_the_stores_states() -> None:
    assert set(STATE_CHOICES) == STATES


def test_ages_durations_and_the_table() -> None:
    assert [age(s) for s in (0, 42.9, 60, 725, 3600, 11220, 86400, 183600, -5)] == ["0s", "42s", "1m00s", "12m05s", "1h00m", "3h07m", "1d00h", "2d03h", "0s"]
    assert [duration(text) for text in ("90", "90s", "1.5m", "2h", "1d", " 15M ")] == [90, 90, 90, 7200, 86400, 900]
    items = [{"id": "a1", "queue": "finance", "state": "claimed", "created": 940.0, "rule": "big-refund", "principal": {"app": "billing"}, "claimed_by": "ann"}]
    assert table(items, now=1000.0) == ["ID  QUEUE    STATE    AGE    RULE        APP      CLAIMED_BY", "a1  finance  claimed  1m00s  big-refund  billing  ann"]


def test_show_names_what_it_cannot_print_as_text() -> None:
    item = {
        "id": "r1", "queue": "q", "state": "claimed", "phase": "request", "policy": "p", "rule": "r", "reason": "why\nnot",
        "principal": {"app": "a", "tenant": "t", "sub": "s"}, "created": 0.0, "deadline": 100.0, "on_timeout": "allow",
        "claimed_by": "ann", "claim_expires": 10.0, "deliveries": 2, "decision": None, "edit_text": "look",
        "content": {"endpoint": "chat/completions", "request": {"model": "m", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:..."}}]},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\": 1}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ]}},
    }
    lines = "\n".join(describe(item, now=50.0)).splitlines()
    assert "  reason:      why not" in lines
    assert "  deadline:    1970-01-01T00:01:40Z (in 50s), then on_timeout: allow" in lines
    assert "  claimed by:  ann (lease lapsed: anyone may claim it; handed out 2 times)" in lines
    assert lines[-7:] == [
        "held request (chat/completions, model m):", "  [user] look", "         [image_url]", '  [assistant] (tool call lookup({"q": 1}))',
        "  [tool] (result of c1) 42", "", "`gateway review edit r1 --content ...` replaces the last user message.",
    ]
    edited = {**item, "state": "edited", "edit_text": None, "decision": {"decision": "edit", "reviewer": "ann", "comment": "", "content": "a\nb", "ts": 60.0}}
    shown = "\n".join(describe(edited, now=70.0))
    assert "  decision:    edit by ann at 1970-01-01T00:01:00Z\n  edited to:   a\n               b" in shown
    assert "  deadline:    1970-01-01T00:01:40Z (not needed: decided)\n  handed out:  2 times, last to ann\n" in shown
    expired = "\n".join(describe({**item, "state": "expired", "edit_text": None}, now=170.0))
    assert "  deadline:    1970-01-01T00:01:40Z (passed: on_timeout allow applied)\n" in expired
    embeddings = {**item, "content": {"endpoint": "embeddings", "request": {"input": ["one", "two"]}}, "edit_text": None}
    assert describe(embeddings, now=50.0)[-2:] == ["  [input] one", "  [input] two"]


def test_audit_show_names_the_review_of_an_exchange() -> None:
    record = {"kind": "review_decision", "id": "r", "instance": "i", "seq": 2, "ts": 0.0, "request_id": "q", "outcome": "ok",
              "event": {"rule": "big-refund"}, "review": {"id": "abc", "queue": "finance", "decision": "approve", "reviewer": "ann", "comment": "ok"}}
    assert "  review     abc (finance) approve by ann: ok" in describe_record(record).splitlines()
    carried = {**record, "kind": "exchange", "review": {"id": "abc", "queue": "finance", "decision": "approve", "reviewer": "ann", "comment": "", "carried_out": True}}
    assert describe_record(carried).splitlines()[-1] == "  review     abc (finance) approve by ann (carried out for the app's later fetch)"
