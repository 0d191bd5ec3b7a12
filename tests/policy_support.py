"""Helpers for policy tests: write a policy directory, compile it, build exchanges."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from gateway.exchange import Endpoint, Exchange, Principal
from gateway.metrics import Metrics
from gateway.policy.compiler import CompiledBundle, compile_bundle
from gateway.policy.policy_set import PolicySet

HEADER = """\
apiVersion: gateway/v1
kind: Policy
metadata: {name: %s}
spec:
"""


def policy_file(name: str, spec: str) -> str:
    """A policy document: `spec` is the YAML under `spec:` (dedented, then indented by two)."""
    return HEADER % name + textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ") + "\n"


def write_policies(directory: Path, **files: str) -> Path:
    """Write `name=spec` pairs as `<name>.yaml` policy files (an existing directory is added to)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, spec in files.items():
        (directory / f"{name}.yaml").write_text(policy_file(name.replace("_", "-"), spec))
    return directory


def compile_dir(directory: Path, **options: Any) -> CompiledBundle:
    return compile_bundle(directory, Metrics(), **options)


def engine(directory: Path, **files: str) -> PolicySet:
    return compile_dir(write_policies(directory, **files)).policies


def chat(content: str, model: str = "mock-gpt", *, principal: Principal | None = None, **body: Any) -> Exchange:
    request = {"model": model, "messages": [{"role": "user", "content": content}], **body}
    exchange = Exchange("test", Endpoint.CHAT, body=request, model=model)
    if principal is not None:
        exchange.principal = principal
    return exchange


def reply(content: str) -> dict[str, Any]:
    return {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}


def delta_event(content: str, index: int = 0, finish: str | None = None) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "choices": [{"index": index, "delta": {"content": content}, "finish_reason": finish}]}


def event_text(events: list[dict[str, Any]]) -> str:
    return "".join((choice.get("delta") or {}).get("content") or "" for event in events for choice in event.get("choices") or ())
