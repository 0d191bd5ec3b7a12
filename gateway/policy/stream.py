"""Response rules enforced on streamed replies, as the events arrive.

Each text channel of a stream (a choice's content, each of its tool calls' arguments) is held back by a
window of `HOLD_BACK_CHARS`: text is released to the client only once it is at least that far from the
end of what has arrived and no match still open runs into it. So a secret or an address split across
chunks is caught whole before any of it leaves; redaction replaces it mid-stream with the same numbered
placeholders as a whole response; a block ends the stream (the relay sends a `content_filter` chunk, an
error event and `[DONE]`). Rules that need the whole reply (`stream: buffer`) make the guard hold the
stream to its end and judge it as one response.
"""

from __future__ import annotations

import copy
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

HOLD_BACK_CHARS = 256
_HALTING = ("block", "escalate", "fallback")  # on a stream, anything but going on ends it


def guard_for(policies: PolicySet, exchange: Exchange) -> StreamGuard | None:
    applies = policies.applicability(exchange)
    if any(applies(rule) for rule in policies.stream_buffered):
        return BufferedGuard(policies, exchange)
    restoring = exchange.redactions is not None and exchange.redactions.restoring
    if restoring or any(applies(rule) for rule in policies.stream_plan.rules):
        evaluation = Evaluation("response", exchange, policies.metrics, applies)
        return IncrementalGuard(policies.stream_plan, evaluation, exchange)
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


class IncrementalGuard:
    def __init__(self, plan: PhasePlan, evaluation: Evaluation, exchange: Exchange) -> None:
        self.plan = plan
        self.evaluation = evaluation
        self.exchange = exchange
        self.pending: dict[tuple[int, int], str] = {}
        self.last_holder: dict[tuple[int, int], tuple[StreamEvent, dict[str, Any], str]] = {}

    def feed(self, event: StreamEvent) -> list[StreamEvent]:
        channels = _channels(self.exchange.endpoint, event)
        ending = _finished(event)
        if not channels and not ending:
            return [event]
        released: list[StreamEvent] = []
        carries_text = False
        for key, holder, field in channels:
            self.pending[key] = self.pending.get(key, "") + holder[field]
            self.last_holder[key] = (event, holder, field)
            holder[field] = self._release(key, final=key[0] in ending)
            carries_text = carries_text or bool(holder[field])
        for key in [key for key in self.pending if key[0] in ending and self.pending[key]]:
            released.append(self._flush_event(key))  # text still held for a choice that ends now
        if carries_text or ending or _has_other_fields(event, channels):
            released.append(event)
        return released

    async def finish(self) -> list[StreamEvent]:
        released = [self._flush_event(key) for key in list(self.pending) if self.pending[key]]
        self.evaluation.conclude()
        return released

    def _flush_event(self, key: tuple[int, int]) -> StreamEvent:
        """A copy of the channel's last event carrying its remaining text (and nothing that ends it)."""
        event, holder, field = self.last_holder[key]
        text = self._release(key, final=True)
        flushed = copy.deepcopy(event)
        for choice in flushed.get("choices") or ():
            if isinstance(choice, dict):
                choice["finish_reason"] = None
        for flushed_key, flushed_holder, flushed_field in _channels(self.exchange.endpoint, flushed):
            flushed_holder[flushed_field] = text if flushed_key == key else ""
        flushed.pop("usage", None)
        return flushed

    def _release(self, key: tuple[int, int], *, final: bool) -> str:
        text = self.pending.get(key, "")
        if not text:
            return ""
        evaluation = self.evaluation
        evaluation.reset_hits()
        part = TextPart([text], 0, text)
        self.plan.evaluate_local(evaluation, Subject("response", self.exchange, [part]))
        if evaluation.best.action in _HALTING:
            self.pending.clear()
            raise StreamBlocked(evaluation.conclude(), [])
        spans = [
            (finding.start, finding.end, finding.kind, rule.restore)
            for rule, hit in evaluation.redacting
            for _, finding in hit.spans
        ]
        cut = len(text) if final else max(len(text) - HOLD_BACK_CHARS, 0)
        changed = True
        while changed:  # never cut through a match: hold back from the start of any match still open
            changed = False
            for start, end, _, _ in spans:
                if start < cut < end:
                    cut, changed = start, True
        redactions: Redactions | None = self.exchange.redactions
        restoring = redactions is not None and redactions.restoring
        if restoring and not final:
            opening = text.rfind("[", max(cut - PLACEHOLDER_MAX, 0), cut)
            if opening != -1 and "]" not in text[opening:cut]:
                cut = opening  # never split a placeholder that restore must recognise whole
        if cut <= 0:
            return ""
        self.pending[key] = text[cut:]
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

    async def finish(self) -> list[StreamEvent]:
        texts: dict[tuple[int, int], list[str]] = {}
        for event in self.held:
            for key, holder, field in _channels(self.exchange.endpoint, event):
                texts.setdefault(key, []).append(holder[field])
        reply = self._as_reply({key: "".join(pieces) for key, pieces in texts.items()})
        verdict: Verdict = await self.policies.check_response(self.exchange, reply)
        if verdict.action in _HALTING:
            raise StreamBlocked(verdict, [])
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
            for key, holder, field in _channels(self.exchange.endpoint, event):
                holder[field] = final.pop(key, "")
        return self.held
