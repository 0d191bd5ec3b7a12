"""`json_schema`: a response must be JSON that fits a schema (a ticket, a classification, a tool result).

Validators are built once per load with `jsonschema`; the schema comes inline or from a file of the
policy bundle (so it is covered by the bundle version and its signature).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jsonschema
import orjson

from gateway.exchange import Endpoint
from gateway.policy.checks.base import Hit, Subject, TextCheck

if TYPE_CHECKING:
    from gateway.config.reader import Section
    from gateway.policy.bundle import Bundle


class JsonSchemaCheck(TextCheck):
    """Fires when any choice's content is not JSON, or is JSON that does not validate."""

    kind = "json_schema"
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "schema": {"type": "object", "description": "An inline JSON Schema."},
            "file": {"type": "string", "description": "A JSON Schema file, relative to the policy directory."},
        },
        "oneOf": [{"required": ["schema"]}, {"required": ["file"]}],
    }
    phases = frozenset({"response"})
    needs_whole_reply = True

    def __init__(self, validator: Any) -> None:
        self._validator = validator

    @classmethod
    def build(cls, options: Section, bundle: Bundle) -> JsonSchemaCheck:
        if options.has("schema") == options.has("file"):
            options.fail(None, "needs exactly one of schema (inline) or file (a path in the policy directory)")
        if options.has("schema"):
            schema = options.section("schema").data
        else:
            path = options.string("file")
            file = bundle.get(path)
            if file is None:
                options.fail("file", f"{path!r} is not a file of the policy directory")
            try:
                schema = orjson.loads(file.data)
            except orjson.JSONDecodeError as exc:
                options.fail("file", f"{path}: not valid JSON ({exc})")
        options.finish()
        validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            validator_class.check_schema(schema)
        except jsonschema.SchemaError as exc:
            options.fail("schema" if options.has("schema") else "file", f"not a valid JSON Schema: {exc.message}")
        return cls(validator_class(schema))

    def inspect(self, subject: Subject) -> Hit | None:
        for index, content in enumerate(_contents(subject)):
            try:
                document = orjson.loads(content)
            except orjson.JSONDecodeError:
                return Hit(f"choice {index}: content is not JSON")
            error = jsonschema.exceptions.best_match(self._validator.iter_errors(document))
            if error is not None:
                where = "/".join(str(step) for step in error.absolute_path) or "(root)"
                return Hit(f"choice {index}: {where}: {error.validator} failed")
        return None


def _contents(subject: Subject) -> list[str]:
    reply = subject.reply or {}
    contents = []
    for choice in reply.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        if subject.exchange.endpoint is Endpoint.COMPLETIONS:
            contents.append(choice.get("text") or "")
        else:
            message = choice.get("message") or {}
            content = message.get("content") if isinstance(message, dict) else None
            contents.append(content if isinstance(content, str) else "")
    return contents
