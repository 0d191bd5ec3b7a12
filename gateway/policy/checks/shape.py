"""`limits` and `models`: the exchange's size and shape, judged before any text is inspected.

Limits run first and always fail closed: they are what bounds the cost of every other check.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from gateway.exchange import Endpoint
from gateway.globs import compile_globs
from gateway.policy.checks.base import ExchangeCheck, Hit, Subject

if TYPE_CHECKING:
    from gateway.config.reader import Section
    from gateway.policy.bundle import Bundle

CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text with OpenAI tokenizers


def estimated_tokens(subject: Subject) -> int:
    return sum(len(part.text) for part in subject.parts) // CHARS_PER_TOKEN + 1


class LimitsCheck(ExchangeCheck):
    kind = "limits"
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "max_body_bytes": {"type": "integer", "minimum": 1},
            "max_messages": {"type": "integer", "minimum": 1},
            "max_estimated_tokens": {"type": "integer", "minimum": 1, "description": "About 4 characters per token."},
            "parameters": {
                "type": "object",
                "description": "Bounds on numeric request parameters, e.g. max_tokens: {max: 4096}.",
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": False,
                    "minProperties": 1,
                    "properties": {"min": {"type": "number"}, "max": {"type": "number"}},
                },
            },
        },
    }
    phases = frozenset({"request"})
    first = True

    def __init__(
        self,
        max_body_bytes: int | None,
        max_messages: int | None,
        max_estimated_tokens: int | None,
        bounds: tuple[tuple[str, float | None, float | None], ...],
    ) -> None:
        self.max_body_bytes = max_body_bytes
        self.max_messages = max_messages
        self.max_estimated_tokens = max_estimated_tokens
        self.bounds = bounds

    @classmethod
    def build(cls, options: Section, bundle: Bundle) -> LimitsCheck:
        max_body = options.integer("max_body_bytes", None, minimum=1)
        max_messages = options.integer("max_messages", None, minimum=1)
        max_tokens = options.integer("max_estimated_tokens", None, minimum=1)
        bounds = []
        parameters = options.section("parameters")
        for name in list(parameters.data):
            bound = parameters.section(str(name))
            low = bound.number("min", None, minimum=float("-inf"))
            high = bound.number("max", None, minimum=float("-inf"))
            bound.finish()
            if low is None and high is None:
                parameters.fail(str(name), "needs min, max or both")
            bounds.append((str(name), low, high))
        options.finish()
        if max_body is None and max_messages is None and max_tokens is None and not bounds:
            options.fail(None, "sets no limit (max_body_bytes, max_messages, max_estimated_tokens or parameters)")
        return cls(max_body, max_messages, max_tokens, tuple(bounds))

    def inspect(self, subject: Subject) -> Hit | None:
        exchange = subject.exchange
        if self.max_body_bytes is not None and exchange.body_bytes > self.max_body_bytes:
            return Hit(f"body {exchange.body_bytes} bytes > {self.max_body_bytes}")
        body = exchange.body
        if self.max_messages is not None and exchange.endpoint is Endpoint.CHAT:
            count = len(body.get("messages") or ())
            if count > self.max_messages:
                return Hit(f"{count} messages > {self.max_messages}")
        if self.max_estimated_tokens is not None:
            tokens = estimated_tokens(subject)
            if tokens > self.max_estimated_tokens:
                return Hit(f"~{tokens} tokens > {self.max_estimated_tokens}")
        for name, low, high in self.bounds:
            hit = _out_of_bounds(name, body.get(name), low, high)
            if hit:
                return hit
        return None


def _out_of_bounds(name: str, value: Any, low: float | None, high: float | None) -> Hit | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return Hit(f"{name} is not a number")
    if low is not None and value < low:
        return Hit(f"{name} {value} < {low:g}")
    if high is not None and value > high:
        return Hit(f"{name} {value} > {high:g}")
    return None


def glob_matcher(options: Section, key: str) -> re.Pattern[str] | None:
    """A list of shell globs (`gpt-4o*`) as one compiled pattern, or None when the key is absent."""
    globs = options.sequence(key, None)
    if globs is None:
        return None
    if not all(isinstance(glob, str) and glob for glob in globs):
        options.fail(key, "must be a list of non-empty strings (globs such as gpt-4o*)")
    return compile_globs(globs)


class ModelsCheck(ExchangeCheck):
    """Fires when the requested model is not allowed: not on `allow` (when given), or on `deny`."""

    kind = "models"
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "allow": {"type": "array", "items": {"type": "string", "minLength": 1}, "description": "Globs, e.g. gpt-4o*."},
            "deny": {"type": "array", "items": {"type": "string", "minLength": 1}},
        },
    }
    phases = frozenset({"request"})

    def __init__(self, allow: re.Pattern[str] | None, deny: re.Pattern[str] | None) -> None:
        self._allow = allow
        self._deny = deny

    @classmethod
    def build(cls, options: Section, bundle: Bundle) -> ModelsCheck:
        allow, deny = glob_matcher(options, "allow"), glob_matcher(options, "deny")
        options.finish()
        if allow is None and deny is None:
            options.fail(None, "needs allow, deny or both")
        return cls(allow, deny)

    def inspect(self, subject: Subject) -> Hit | None:
        model = subject.exchange.model
        if self._deny is not None and self._deny.match(model):
            return Hit("model is on the deny list")
        if self._allow is not None and not self._allow.match(model):
            return Hit("model is not on the allow list")
        return None
