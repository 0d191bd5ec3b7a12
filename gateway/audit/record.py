"""Builds the audit record (DESIGN.md "Audit record") of a finished Exchange.

Raw prompts and replies never enter the record unless `audit.content` asks: by default the record holds
HMAC-SHA256 digests, so content can be matched later without being stored.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

import orjson

from gateway.exchange import Attempt, Decision, Exchange, Usage
from gateway.ids import IdGenerator

SCHEMA_VERSION = 1


def instance_id() -> str:
    """Names this process run in audit records (`host:pid:nonce`): many instances and workers write to one
    trail, and each keeps its own hash chain. The random part keeps a restarted container (same host name,
    same pid 1) from continuing, and so forking, the chain of its previous life."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(slots=True)
class AuditRecord:
    """One audit record (DESIGN.md "Audit record"); the field order is the JSON key order.

    A slotted dataclass, not a dict: it costs one constructor call on the request path, and orjson
    serialises it (and the Attempt, Decision and Usage dataclasses inside) natively in the writer.
    Not `frozen`: that routes each of its 21 fields through object.__setattr__, which measured 2.4% of
    the gateway's instructions per request; nothing touches a record after it is submitted.
    """

    v: int
    id: str
    ts: float
    kind: str
    request_id: str
    instance: str
    principal: dict[str, str | None]
    endpoint: str | None
    model: str | None
    stream: bool
    route: list[Attempt]
    policy_version: str
    decisions: list[Decision]
    degraded: bool
    outcome: str
    http_status: int
    error: dict[str, str] | None
    usage: Usage | None
    stream_chunks: int | None
    latency_ms: dict[str, float]
    content: dict[str, Any] | None
    event: dict[str, Any] | None = None  # what a non-exchange record is about (a policy reload, an admin action)
    review: dict[str, Any] | None = None  # {id, queue, decision, reviewer, comment}: escalated exchanges and review decisions


class ContentDigest:
    """HMAC-SHA256 (RFC 2104) with the key's inner and outer hash states prepared once.

    Same digests as `hmac.new(key, data, sha256)` (a test holds it to that), at about half the cost per
    call, which matters at two digests per request.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = sha256().block_size
        key = sha256(key).digest() if len(key) > block else key
        key = key.ljust(block, b"\0")
        self._inner = sha256(bytes(byte ^ 0x36 for byte in key))
        self._outer = sha256(bytes(byte ^ 0x5C for byte in key))

    def hexdigest(self, data: bytes) -> str:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


class RecordBuilder:
    def __init__(self, instance: str, content_mode: str, hmac_key: bytes, ids: IdGenerator) -> None:
        self.instance = instance
        self._ids = ids
        self.content_mode = content_mode
        self._digest = ContentDigest(hmac_key)

    def exchange_record(self, exchange: Exchange, policy_version: str) -> AuditRecord:
        """Shares the Exchange's attempt and decision lists: the exchange is finished, nothing changes them."""
        error = exchange.error
        return AuditRecord(
            v=SCHEMA_VERSION,
            id=self._ids.new(),
            ts=exchange.ts,
            kind="exchange",
            request_id=exchange.request_id,
            instance=self.instance,
            principal=exchange.principal.identity(),
            endpoint=exchange.endpoint.value if exchange.endpoint else None,
            model=exchange.model or None,
            stream=exchange.stream,
            route=exchange.attempts,
            policy_version=policy_version,
            decisions=exchange.decisions,
            degraded=exchange.degraded,
            outcome=exchange.outcome,
            http_status=exchange.http_status,
            error={"type": error.type, "code": error.code} if error else None,
            usage=exchange.usage,
            stream_chunks=exchange.stream_chunks if exchange.stream else None,
            latency_ms={
                "total": round(exchange.elapsed_s() * 1000, 3),
                "upstream": round(exchange.upstream_s * 1000, 3),
                "policy": round(exchange.policy_s * 1000, 3),
            },
            content=self._content(exchange),
            review=exchange.review,
        )

    def event_record(
        self, kind: str, policy_version: str, event: dict[str, Any], *, request_id: str = "", outcome: str = "ok",
        review: dict[str, Any] | None = None,
    ) -> AuditRecord:
        """A record of something other than an exchange: a policy reload, an admin action, a review decision."""
        return AuditRecord(
            v=SCHEMA_VERSION, id=self._ids.new(), ts=time.time(), kind=kind, request_id=request_id or self._ids.new(),
            instance=self.instance, principal={"app": None, "tenant": None, "sub": None}, endpoint=None, model=None,
            stream=False, route=[], policy_version=policy_version, decisions=[], degraded=False, outcome=outcome,
            http_status=0, error=None, usage=None, stream_chunks=None, latency_ms={}, content=None, event=event,
            review=review,
        )

    def _content(self, exchange: Exchange) -> dict[str, Any] | None:
        if self.content_mode == "none" or not exchange.body:
            return None
        request = orjson.dumps(exchange.body, option=orjson.OPT_SORT_KEYS)
        response = exchange.response_body if exchange.response_body is not None else exchange.stream_text().encode()
        if self.content_mode == "hmac":
            digest = self._digest.hexdigest
            return {"request_hmac": digest(request), "response_hmac": digest(response) if response else None}
        # `redacted` and `full` store text; the body on the Exchange is the post-policy (forwarded) one, and a
        # reply whose placeholders were restored is masked again, so `redacted` never stores what was redacted.
        text = response.decode("utf-8", "replace")
        if self.content_mode == "redacted" and exchange.redactions is not None:
            text = exchange.redactions.mask(text)
        return {"request": exchange.body, "response": text, "redacted": self.content_mode == "redacted"}
