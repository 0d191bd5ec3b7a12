"""Response rules enforced on streamed replies, as the events arrive.

Each text channel of a stream (a choice's content, each of its tool calls' arguments) is held back by a
window (`policies.stream.window_chars`, 256 by default): text is released to the client only once it is
that far from the end of what has arrived and no match still open runs into it, or once it has been held
for `policies.stream.max_hold_ms` (then checked as it stands, so a stalled or slow stream never holds
text back for long). So a secret or an address split across
chunks is caught whole before any of it leaves; redaction replaces it mid-stream with the same numbered
placeholders as a whole response; a block ends the stream (the relay sends a `content_filter` chunk, an
error event and `[DONE]`). Rules that need the whole reply (`stream: buffer`) make the guard hold the
stream to its end and judge it as one response.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.exchange import Endpoint, Exchange
from gateway.policy.checks import Subject
from gateway.policy.engine import StreamBlocked, StreamGuard, Verdict
from gateway.policy.evaluation import Evaluation
from gateway.policy.redaction import PLACEHOLDER_MAX, Redactions
from gateway.policy.text import TextPart
from gateway.providers.base import StreamEvent

if TYPE_CHECKING:
    from gateway.policy.policy_set import PhasePlan, PolicySet

_HALTING = ("block", "escalate", "fallback")  # on a stream, anything but going on ends it


def guard_for(policies: PolicySet, exchange: Exchange) -> StreamGuard | None:
    applies = policies.applicability(exchange)
    if any(applies(rule) for rule in policies.stream_buffered):
        return BufferedGuard(policies, exchange)
    restoring = exchange.redactions is not None and exchange.redactions.restoring
    if restoring or any(applies(rule) for rule in policies.stream_plan.rules):
        evaluation = Evaluation("response", exchange, policies.metrics, applies)
        hold = policies.stream_hold
        return IncrementalGuard(policies.stream_plan, evaluation, exchange, hold.window_chars, hold.max_hold_ms / 1000)
    return None


def _channels(endpoint: Endpoint | None, event: StreamEvent) -> list[tuple[tuple[int, int], dict[str, Any], str]]:
    """The text-carrying fields of one event: (channel key, holder, field name)."""
    found = []
    for choice in event.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        index = choice.get("index", 0)
        if endpoint is Endpoint.COMPLETIONS:
            if isinstance(choice.get("text"), str):
                found.append(((index, -1), choice, "text"))
            continue
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            continue
        if isinstance(delta.get("content"), str):
            found.append(((index, -1), delta, "content"))
        for call in delta.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                found.append(((index, call.get("index", 0)), function, "arguments"))
    return found


def _finished(event: StreamEvent) -> set[int]:
    return {choice.get("index", 0) for choice in event.get("choices") or () if isinstance(choice, dict) and choice.get("finish_reason")}


@dataclass(slots=True)
class _Channel:
    """One text channel's held-back text, and when each piece of it arrived (for the hold-time bound)."""

    pending: str = ""
    arrivals: deque[tuple[float, int]] = field(default_factory=deque)  # (arrival time, end offset in pending)
    last: tuple[StreamEvent, dict[str, Any], str] | None = None  # the last event that carried its text

    def consumed(self, count: int) -> None:
        """The first `count` characters of `pending` were released."""
        self.pending = self.pending[count:]
        arrivals = self.arrivals
        while arrivals and arrivals[0][1] <= count:
            arrivals.popleft()
        for index, (arrived, end) in enumerate(arrivals):
            arrivals[index] = (arrived, end - count)

    def aged_end(self, cutoff: float) -> int:
        """How much of `pending` arrived at or before `cutoff` (and must now go out)."""
        end = 0
        for arrived, offset in self.arrivals:
            if arrived > cutoff:
                break
            end = offset
        return end


class IncrementalGuard:
    def __init__(self, plan: PhasePlan, evaluation: Evaluation, exchange: Exchange, window: int, max_hold_s: float) -> None:
        self.plan = plan
        self.evaluation = evaluation
        self.exchange = exchange
        self.window = window
        self.max_hold_s = max_hold_s
        self.channels: dict[tuple[int, int], _Channel] = {}

    def feed(self, event: StreamEvent) -> list[StreamEvent]:
        found = _channels(self.exchange.endpoint, event)
        ending = _finished(event)
        if not found and not ending:
            return [event]
        now = time.monotonic()
        released: list[StreamEvent] = []
        carries_text = False
        for key, holder, name in found:
            channel = self.channels.get(key)
            if channel is None:
                channel = self.channels[key] = _Channel()
            channel.pending += holder[name]
            channel.arrivals.append((now, len(channel.pending)))
            channel.last = (event, holder, name)
            holder[name] = self._release(channel, now, final=key[0] in ending)
            carries_text = carries_text or bool(holder[name])
        for key, channel in self.channels.items():
            if key[0] in ending and channel.pending:  # text still held for a choice that ends now
                released.append(self._flush_event(key, self._release(channel, now, final=True)))
        if carries_text or ending or _has_other_fields(event, found):
            released.append(event)
        return released

    def next_deadline(self) -> float | None:
        """When the oldest held text reaches the hold-time bound (time.monotonic()), or None."""
        oldest = [channel.arrivals[0][0] for channel in self.channels.values() if channel.pending and channel.arrivals]
        return min(oldest) + self.max_hold_s if oldest else None

    def release_due(self) -> list[StreamEvent]:
        """Text held for `max_hold_s` goes out now, checked, even though no more has arrived."""
        now = time.monotonic()
        released = []
        for key, channel in self.channels.items():
            if channel.pending and channel.aged_end(now - self.max_hold_s):
                text = self._release(channel, now, final=False)
                if text:
                    released.append(self._flush_event(key, text))
        return released

    async def finish(self) -> list[StreamEvent]:
        now = time.monotonic()
        released = [
            self._flush_event(key, self._release(channel, now, final=True))
            for key, channel in self.channels.items()
            if channel.pending
        ]
        self.evaluation.conclude()
        return released

    def _flush_event(self, key: tuple[int, int], text: str) -> StreamEvent:
        """A copy of the channel's last event carrying `text` (and nothing that ends the choice)."""
        last = self.channels[key].last
        assert last is not None, "a channel exists only once an event carried its text"
        flushed = copy.deepcopy(last[0])
        for choice in flushed.get("choices") or ():
            if isinstance(choice, dict):
                choice["finish_reason"] = None
        for flushed_key, flushed_holder, flushed_name in _channels(self.exchange.endpoint, flushed):
            flushed_holder[flushed_name] = text if flushed_key == key else ""
        flushed.pop("usage", None)
        return flushed

    def _release(self, channel: _Channel, now: float, *, final: bool) -> str:
        """Check the channel's held text and release what may go: all of it when the choice ends, else
        what lies beyond the window or has been held too long, never cutting into an unfinished match."""
        text = channel.pending
        if not text:
            return ""
        evaluation = self.evaluation
        evaluation.reset_hits()
        self.plan.evaluate_local(evaluation, Subject("response", self.exchange, [TextPart([text], 0, text)]))
        if evaluation.best.action in _HALTING:
            self.channels.clear()
            raise StreamBlocked(evaluation.conclude(), [])
        spans = [
            (finding.start, finding.end, finding.kind, rule.restore)
            for rule, hit in evaluation.redacting
            for _, finding in hit.spans
        ]
        windowed = len(text) - self.window
        aged = channel.aged_end(now - self.max_hold_s)
        cut = len(text) if final else max(windowed, aged, 0)
        forced = final or aged > windowed  # held too long: a match found whole goes out redacted now
        changed = True
        while changed:  # never cut through a match
            changed = False
            for start, end, _, _ in spans:
                if start < cut < end:
                    cut, changed = (end if forced else start), True
        redactions: Redactions | None = self.exchange.redactions
        restoring = redactions is not None and redactions.restoring
        if restoring and not final:
            opening = text.rfind("[", max(cut - PLACEHOLDER_MAX, 0), cut)
            if opening != -1 and "]" not in text[opening:cut]:
                cut = opening  # never split a placeholder that restore must recognise whole
        if cut <= 0:
            return ""
        channel.consumed(cut)
        out = text[:cut]
        done = [span for span in spans if span[1] <= cut]
        if done:
            if redactions is None:
                redactions = self.exchange.redactions = Redactions()
            out = redactions.apply(out, done)
        if restoring and redactions is not None:
            out = redactions.restore(out)
        return out


def _has_other_fields(event: StreamEvent, channels: list[tuple[tuple[int, int], dict[str, Any], str]]) -> bool:
    """Whether an event whose text is all held back still carries something else (a role, a tool call id)."""
    if event.get("usage"):
        return True
    for choice in event.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict) and (delta.get("role") or any(isinstance(c, dict) and c.get("id") for c in delta.get("tool_calls") or ())):
            return True
    return False


class BufferedGuard:
    """Holds the whole stream, then judges it as one reply (rules with `stream: buffer`)."""

    def __init__(self, policies: PolicySet, exchange: Exchange) -> None:
        self.policies = policies
        self.exchange = exchange
        self.held: list[StreamEvent] = []

    def feed(self, event: StreamEvent) -> list[StreamEvent]:
        self.held.append(event)
        return []

    def next_deadline(self) -> float | None:
        return None  # holds everything to the end, by definition

    def release_due(self) -> list[StreamEvent]:
        return []

    async def finish(self) -> list[StreamEvent]:
        texts: dict[tuple[int, int], list[str]] = {}
        for event in self.held:
            for key, holder, name in _channels(self.exchange.endpoint, event):
                texts.setdefault(key, []).append(holder[name])
        reply = self._as_reply({key: "".join(pieces) for key, pieces in texts.items()})
        verdict: Verdict = await self.policies.check_response(self.exchange, reply)
        if verdict.action in _HALTING:
            raise StreamBlocked(verdict, [], reply=reply, release=self._rewritten)
        return self._rewritten(reply)

    def _as_reply(self, texts: dict[tuple[int, int], str]) -> dict[str, Any]:
        """The stream as a non-streamed reply, so buffered rules judge it exactly like one."""
        choices: dict[int, dict[str, Any]] = {}
        for (index, call), text in sorted(texts.items()):
            choice = choices.setdefault(index, {"index": index, "message": {"role": "assistant", "content": ""}, "text": ""})
            if self.exchange.endpoint is Endpoint.COMPLETIONS:
                choice["text"] = text
            elif call == -1:
                choice["message"]["content"] = text
            else:
                choice["message"].setdefault("tool_calls", []).append({"index": call, "function": {"arguments": text}})
        return {"choices": list(choices.values())}

    def _rewritten(self, reply: dict[str, Any]) -> list[StreamEvent]:
        """The held events with each channel's (possibly redacted) text in its first event, none in the rest."""
        final: dict[tuple[int, int], str] = {}
        for choice in reply["choices"]:
            index = choice["index"]
            if self.exchange.endpoint is Endpoint.COMPLETIONS:
                final[(index, -1)] = choice["text"]
                continue
            final[(index, -1)] = choice["message"]["content"]
            for call in choice["message"].get("tool_calls") or ():
                final[(index, call["index"])] = call["function"]["arguments"]
        for event in self.held:
            for key, holder, name in _channels(self.exchange.endpoint, event):
                holder[name] = final.pop(key, "")
        return self.held
