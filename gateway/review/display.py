"""How a review reads to a person, the same in the console and the CLI: messages as text, and ages."""

from __future__ import annotations

import json
from typing import Any


def content_text(value: Any) -> str:
    """Message content as text: a string as it is, the text parts of a content array (other parts by
    their type, like `[image_url]`), anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(_part(part) for part in value)
    return json.dumps(value, indent=2, ensure_ascii=False)


def message_text(message: dict[str, Any]) -> tuple[str, str]:
    """A chat message's label (its role, and name) and its text, tool calls and tool results named rather
    than dropped."""
    role = str(message.get("role") or "?")
    if message.get("name"):
        role += f" {message['name']}"
    parts = [f"(result of {message['tool_call_id']})"] if message.get("tool_call_id") else []
    if message.get("content") is not None:
        parts.append(content_text(message.get("content")))
    for tool_call in message.get("tool_calls") or []:
        function = tool_call.get("function") if isinstance(tool_call, dict) else None
        if isinstance(function, dict):
            parts.append(f"(tool call {function.get('name')}({function.get('arguments') or ''}))")
    return role, " ".join(part for part in parts if part) or "(empty)"


def _part(part: Any) -> str:
    if isinstance(part, dict) and part.get("type") == "text":
        return str(part.get("text", ""))
    if isinstance(part, dict):
        return f"[{part.get('type') or 'part'}]"
    return json.dumps(part, ensure_ascii=False)


def age(seconds: float) -> str:
    """A duration as a reviewer reads it: 42s, 12m05s, 3h07m, 2d03h."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"
