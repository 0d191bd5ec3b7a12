"""A reviewer's `edit`: the text they wrote replaces the text they judged.

A reviewer edits prose, not JSON: the decision carries one string (DESIGN.md, `/decision`). In the
request phase it replaces the prompt the model would have read (the last user message, the completion
prompt, or the embedding input); in the response phase it replaces the answer (the first choice's message
or text). Everything else in the body stays as the gateway checked it. The edited body is forwarded as the
reviewer wrote it, without another request-policy pass: the reviewer's decision is the check, and it is
audited with their name.
"""

from __future__ import annotations

import copy
from typing import Any

from gateway.exchange import Endpoint


class EditRefused(ValueError):
    """The held content has no text where the edit would go (for example a chat with no user message)."""


def edit_request(endpoint: Endpoint, body: dict[str, Any], text: str) -> dict[str, Any]:
    """A copy of the request body with the reviewed prompt replaced by `text`."""
    edited = copy.deepcopy(body)
    if endpoint is Endpoint.CHAT:
        messages = edited.get("messages")
        for message in reversed(messages if isinstance(messages, list) else []):
            if isinstance(message, dict) and message.get("role") == "user":
                message["content"] = text
                return edited
        raise EditRefused("the request has no user message to replace")
    edited["prompt" if endpoint is Endpoint.COMPLETIONS else "input"] = text
    return edited


def edit_reply(endpoint: Endpoint, reply: dict[str, Any], text: str) -> dict[str, Any]:
    """A copy of the reply with the first choice's answer replaced by `text` (other choices dropped: the
    reviewer approved one answer, not the ones they were not shown edited)."""
    edited = copy.deepcopy(reply)
    choices = edited.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise EditRefused("the reply has no choice to replace")
    first = choices[0]
    if endpoint is Endpoint.COMPLETIONS:
        first["text"] = text
    else:
        message = first.get("message")
        first["message"] = {**(message if isinstance(message, dict) else {}), "role": "assistant", "content": text}
        first["message"].pop("tool_calls", None)  # the edited answer is the answer
        if first.get("finish_reason") == "tool_calls":
            first["finish_reason"] = "stop"
    edited["choices"] = [first]
    return edited


def edited_text(content: dict[str, Any], endpoint: Endpoint, phase: str) -> str:
    """The text an edit would replace, for the console's edit box."""
    if phase == "response":
        choices = (content.get("reply") or {}).get("choices") or [{}]
        first = choices[0] if isinstance(choices[0], dict) else {}
        if endpoint is Endpoint.COMPLETIONS:
            return str(first.get("text") or "")
        return _text((first.get("message") or {}).get("content"))
    body = content.get("request") or {}
    if endpoint is Endpoint.CHAT:
        for message in reversed(body.get("messages") or []):
            if isinstance(message, dict) and message.get("role") == "user":
                return _text(message.get("content"))
        return ""
    return _text(body.get("prompt" if endpoint is Endpoint.COMPLETIONS else "input"))


def _text(value: Any) -> str:
    """Message content as one string: content-part arrays joined by their text parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(str(part.get("text", "")) for part in value if isinstance(part, dict) and part.get("type") == "text")
    return "" if value is None else str(value)
