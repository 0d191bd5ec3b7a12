"""The JSON Schema of the policy file format (`gateway policy schema`), for editors and CI linters.

The loader is the authority (it also checks what a schema cannot: RE2 syntax, unique ids, which actions
a check allows); this schema lets an editor complete keys and flag typos as the file is written. Each
check's options come from the check class itself, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from gateway.policy.checks import CHECKS
from gateway.policy.loader import API_VERSION
from gateway.policy.model import ACTIONS, MODES, ON_ERROR, PHASES, STREAM_MODES
from gateway.policy.stages import RFC3339

_STRINGS = {"type": "array", "items": {"type": "string"}}
_STRING_OR_STRINGS = {"oneOf": [{"type": "string"}, _STRINGS]}
_INSTANT = {"type": "string", "format": "date-time", "pattern": f"^{RFC3339.pattern}$"}
_UNTIL = {**_INSTANT, "description": "With mode: monitor beside it: monitored until this RFC 3339 time (zone required), enforced (or rolled out) after."}
_ROLLOUT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["percent"],
    "description": "Enforce for this share of requests (by request id), monitor the rest.",
    "properties": {"percent": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 100}},
}


def policy_schema() -> dict[str, Any]:
    check = {
        "type": "object",
        "description": "Exactly one check.",
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": False,
        "properties": {kind: check_class.options_schema for kind, check_class in CHECKS.items()},
    }
    phase = {"enum": list(PHASES)}
    rule = {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "phase", "check", "action"],
        "properties": {
            "id": {"type": "string", "pattern": "^[A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$", "description": "Unique in the bundle; the error code when it blocks."},
            "description": {"type": "string"},
            "phase": {"oneOf": [phase, {"type": "array", "items": phase, "minItems": 1}]},
            "check": check,
            "action": {"enum": list(ACTIONS)},
            "mode": {"enum": list(MODES)},
            "until": _UNTIL,
            "rollout": _ROLLOUT,
            "on_error": {"enum": list(ON_ERROR)},
            "message": {"type": "string", "description": "What a blocked client is told."},
            "restore": {"type": "boolean", "description": "redact only: put the originals back into the reply."},
            "review": {
                "type": "object",
                "additionalProperties": False,
                "required": ["queue"],
                "properties": {
                    "queue": {"type": "string"},
                    "wait_s": {"type": "number", "minimum": 0},
                    "deadline_s": {"type": "number", "minimum": 0, "maximum": 604800},
                    "on_timeout": {"enum": ["block", "allow"]},
                },
            },
            "fallback": {"type": "object", "additionalProperties": False, "required": ["model"], "properties": {"model": {"type": "string"}}},
            "stream": {"enum": list(STREAM_MODES)},
        },
    }
    test = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "request", "expect"],
        "properties": {
            "name": {"type": "string"},
            "route": {"enum": ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]},
            "request": {"type": "object", "required": ["model"]},
            "principal": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "app": {"type": "string"}, "tenant": {"type": "string"}, "sub": {"type": "string"},
                    "roles": _STRINGS, "claims": {"type": "object"},
                },
            },
            "upstream_reply": {"type": "object", "description": "The provider's (mocked) non-streamed reply."},
            "upstream_stream": {**_STRINGS, "description": "The provider's (mocked) streamed reply, as text chunks."},
            "request_id": {"type": "string", "description": "The exchange's request id: pins staged rules' rollout side."},
            "at": {**_INSTANT, "description": "The exchange's time: pins staged rules' until."},
            "expect": {
                "type": "object",
                "additionalProperties": False,
                "minProperties": 1,
                "properties": {
                    "action": {"enum": list(ACTIONS)},
                    "rule": {"type": "string", "description": "A rule that fires."},
                    "fired": _STRING_OR_STRINGS,
                    "not_fired": _STRING_OR_STRINGS,
                    "upstream_contains": _STRING_OR_STRINGS,
                    "upstream_not_contains": _STRING_OR_STRINGS,
                    "response_contains": _STRING_OR_STRINGS,
                    "response_not_contains": _STRING_OR_STRINGS,
                    "status": {"type": "integer"},
                },
            },
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Gateway policy file",
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": API_VERSION},
            "kind": {"const": "Policy"},
            "metadata": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$"},
                    "owner": {"type": "string"},
                    "description": {"type": "string"},
                },
            },
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["rules"],
                "properties": {
                    "mode": {"enum": list(MODES)},
                    "until": _UNTIL,
                    "rollout": _ROLLOUT,
                    "priority": {"type": "integer"},
                    "on_error": {"enum": list(ON_ERROR)},
                    "match": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "models": _STRINGS,
                            "apps": _STRINGS,
                            "claims": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": ["string", "integer"]}}},
                            "routes": _STRINGS,
                        },
                    },
                    "rules": {"type": "array", "items": rule, "minItems": 1},
                    "tests": {"type": "array", "items": test},
                },
            },
        },
    }
