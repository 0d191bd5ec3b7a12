"""Streamed replies: the hold-back window catches matches split across chunks, redacts and blocks mid-stream."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.policy.engine import StreamBlocked
from gateway.policy.policy_set import PolicySet
from gateway.config.model import StreamHold
from policy_support import chat, delta_event, engine, event_text

HOLD_BACK_CHARS = StreamHold().window_chars

MASK_CARDS = """
rules:
  - id: mask-cards
    phase: response
    check: {pii: {entities: [CREDIT_CARD]}}
    action: redact
"""
BLOCK_WORD = """
rules:
  - id: no-plutonium
    phase: response
    check: {keywords: {words: [plutonium]}}
    action: block
"""


def relay(policies: PolicySet, chunks: list[str], exchange: Any = None) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """Feed chunks through the guard; returns everything released and what each feed released."""
    exchange = exchange or chat("go", stream=True)
    guard = policies.stream_guard(exchange)
    assert guard is not None
    per_feed = [guard.feed(delta_event(chunk)) for chunk in chunks]
    per_feed.append(guard.feed({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    per_feed.append(asyncio.run(guard.finish()))
    return [event for batch in per_feed for event in batch], per_feed


def test_a_card_number_split_across_chunks_is_redacted(tmp_path: Path) -> None:
    released, _ = relay(engine(tmp_path, cards=MASK_CARDS), ["Use 4111 11", "11 1111 1", "111 for tests."])
    assert event_text(released) == "Use [CREDIT_CARD_1] for tests."
    assert released[-1]["choices"][0]["finish_reason"] == "stop"  # the end still comes last


def test_text_is_held_back_only_by_the_window(tmp_path: Path) -> None:
    policies = engine(tmp_path, cards=MASK_CARDS)
    long_text = "x" * (HOLD_BACK_CHARS + 100)
    _, per_feed = relay(policies, [long_text, "tail"])
    assert event_text(per_feed[0]) == "x" * 100  # all but the window went out at once
    assert event_text(per_feed[1]) == "x" * 4  # the window slides by what arrives


def test_a_block_mid_stream_stops_before_the_word_leaves(tmp_path: Path) -> None:
    policies = engine(tmp_path, words=BLOCK_WORD)
    exchange = chat("go", stream=True)
    guard = policies.stream_guard(exchange)
    assert guard is not None
    released = guard.feed(delta_event("a" * 300 + " the recipe needs pluto"))
    with pytest.raises(StreamBlocked) as blocked:
        guard.feed(delta_event("nium and more"))
    assert "pluto" not in event_text(released)
    assert blocked.value.verdict.rule is not None and blocked.value.verdict.rule.id == "no-plutonium"
    assert [d.rule for d in exchange.decisions] == ["no-plutonium"]


def test_restored_placeholders_are_never_split(tmp_path: Path) -> None:
    policies = engine(tmp_path, pii="""
        rules:
          - {id: mask-email, phase: request, check: {pii: {entities: [EMAIL]}}, action: redact, restore: true}
    """)
    exchange = chat("reply to ann@example.com", stream=True)
    asyncio.run(policies.check_request(exchange))
    assert exchange.body["messages"][0]["content"] == "reply to [EMAIL_1]"
    released, _ = relay(policies, ["y" * 300, "Dear [EMA", "IL_1], thanks"], exchange)
    assert event_text(released) == "y" * 300 + "Dear ann@example.com, thanks"


def test_tool_call_arguments_are_guarded_too(tmp_path: Path) -> None:
    policies = engine(tmp_path, cards=MASK_CARDS)
    exchange = chat("go", stream=True)
    guard = policies.stream_guard(exchange)
    assert guard is not None
    first = {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "pay", "arguments": '{"card": "4111 1111'}}]}, "finish_reason": None}]}
    second = {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ' 1111 1111"}'}}]}, "finish_reason": None}]}
    end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    released = guard.feed(first) + guard.feed(second) + guard.feed(end) + asyncio.run(guard.finish())
    arguments = "".join(
        call["function"].get("arguments", "")
        for event in released for choice in event["choices"] for call in (choice["delta"].get("tool_calls") or ())
    )
    assert arguments == '{"card": "[CREDIT_CARD_1]"}'
    assert released[0]["choices"][0]["delta"]["tool_calls"][0]["id"] == "call_1"  # the call's identity goes out at once


def test_buffered_rules_judge_the_whole_stream(tmp_path: Path) -> None:
    policies = engine(tmp_path, replies="""
        rules:
          - id: ticket
            phase: response
            check: {json_schema: {schema: {type: object, required: [ticket]}}}
            action: block
    """)
    released, _ = relay(policies, ['{"tick', 'et": 1}'])
    assert event_text(released) == '{"ticket": 1}'
    with pytest.raises(StreamBlocked):
        relay(policies, ['{"nope', '": 1}'])


def test_no_guard_when_nothing_inspects_streams(tmp_path: Path) -> None:
    policies = engine(tmp_path, requests_only="""
        rules:
          - {id: words, phase: request, check: {keywords: {words: [apple]}}, action: block}
    """)
    assert policies.stream_guard(chat("hi", stream=True)) is None


def test_text_held_past_the_time_bound_goes_out_checked(tmp_path: Path) -> None:
    policies = engine(tmp_path, cards=MASK_CARDS)
    policies.stream_hold = StreamHold(window_chars=256, max_hold_ms=50)
    exchange = chat("go", stream=True)
    guard = policies.stream_guard(exchange)
    assert guard is not None
    assert guard.feed(delta_event("card 4111 1111 1111 1111, then")) == []  # all within the window
    deadline = guard.next_deadline()
    assert deadline is not None
    assert guard.release_due() == []  # not yet due
    time.sleep(0.06)
    assert event_text(guard.release_due()) == "card [CREDIT_CARD_1], then"
    assert guard.next_deadline() is None  # nothing held any more
