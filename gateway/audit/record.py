"""Builds the audit record (DESIGN.md "Audit record") of a finished Exchange.

Raw prompts and replies never enter the record unless `audit.content` asks: by default the record holds
HMAC-SHA256 digests, so content can be matched later without being stored.
"""

from __future__ import annotations

import hmac
import os
import socket
from hashlib import sha256
from typing import Any

import orjson

from gateway.exchange import Exchange
from gateway.ids import IdGenerator

SCHEMA_VERSION = 1


def instance_id() -> str:
    """Names this process in audit records: many instances and workers write to one trail."""
    return f"{socket.gethostname()}:{os.getpid()}"


class RecordBuilder:
    def __init__(self, instance: str, content_mode: str, hmac_key: bytes, ids: IdGenerator) -> None:
        self.instance = instance
        self._ids = ids
        self.content_mode = content_mode
        self._hmac = hmac.new(hmac_key, digestmod=sha256)  # keyed once; copies skip re-deriving the pads

    def exchange_record(self, exchange: Exchange, policy_version: str) -> dict[str, Any]:
        principal = exchange.principal
        error = exchange.error
        total_ms = exchange.elapsed_s() * 1000
        record: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "id": self._ids.new(),
            "ts": exchange.ts,
            "kind": "exchange",
            "request_id": exchange.request_id,
            "instance": self.instance,
            "principal": {"app": principal.app, "tenant": principal.tenant, "sub": principal.sub},
            "endpoint": exchange.endpoint.value if exchange.endpoint else None,
            "model": exchange.model or None,
            "stream": exchange.stream,
            "route": [
                {"target": a.target, "status": a.status, "latency_ms": round(a.latency_ms, 3), "error": a.error}
                for a in exchange.attempts
            ],
            "policy_version": policy_version,
            "decisions": [
                {
                    "policy": d.policy, "rule": d.rule, "phase": d.phase, "action": d.action, "mode": d.mode,
                    "verdict": d.verdict, "detail": d.detail, "latency_us": round(d.latency_us, 1),
                }
                for d in exchange.decisions
            ],
            "degraded": exchange.degraded,
            "outcome": exchange.outcome,
            "http_status": exchange.http_status,
            "error": {"type": error.type, "code": error.code} if error else None,
            "usage": (
                {"prompt_tokens": exchange.usage.prompt_tokens, "completion_tokens": exchange.usage.completion_tokens}
                if exchange.usage
                else None
            ),
            "stream_chunks": exchange.stream_chunks if exchange.stream else None,
            "latency_ms": {
                "total": round(total_ms, 3),
                "upstream": round(exchange.upstream_s * 1000, 3),
                "policy": round(exchange.policy_s * 1000, 3),
            },
            "content": self._content(exchange),
        }
        return record

    def _content(self, exchange: Exchange) -> dict[str, Any] | None:
        if self.content_mode == "none" or not exchange.body:
            return None
        request = orjson.dumps(exchange.body, option=orjson.OPT_SORT_KEYS)
        response = exchange.response_body if exchange.response_body is not None else exchange.stream_text().encode()
        if self.content_mode == "hmac":
            return {"request_hmac": self._digest(request), "response_hmac": self._digest(response) if response else None}
        # `redacted` and `full` store text; the body on the Exchange is the post-policy (forwarded) one.
        return {"request": exchange.body, "response": response.decode("utf-8", "replace"), "redacted": self.content_mode == "redacted"}

    def _digest(self, data: bytes) -> str:
        digest = self._hmac.copy()
        digest.update(data)
        return digest.hexdigest()
