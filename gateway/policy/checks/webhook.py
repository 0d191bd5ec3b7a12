"""`webhook`: an external classifier, asked over HTTP with a deadline.

The contract with the classifier: the gateway POSTs
`{"phase", "model", "app", "tenant", "request_id", "texts": [...]}` and expects 200 with
`{"fire": true|false, "detail": "..."}`, or `{"score": 0.0-1.0}` judged against the rule's
`threshold`. Anything else (timeout, refused connection, non-200, not that JSON) is a check error, and
the rule's `on_error` decides: closed (block, the default) or open (go on, degraded).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from gateway.policy.checks.base import Hit, RemoteCheck, Subject

if TYPE_CHECKING:
    from gateway.config.reader import Section
    from gateway.policy.bundle import Bundle


class WebhookError(Exception):
    """The classifier did not give a usable answer; the message says how, without any content."""


class WebhookCheck(RemoteCheck):
    kind = "webhook"
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["url"],
        "properties": {
            "url": {"type": "string", "pattern": "^https?://"},
            "timeout_ms": {"type": "number", "minimum": 1, "default": 1000},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "threshold": {"type": "number", "minimum": 0, "maximum": 1},
        },
    }
    needs_whole_reply = True

    def __init__(self, url: str, timeout_s: float, headers: dict[str, str], threshold: float | None) -> None:
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.headers = {"content-type": "application/json", **headers}
        self.threshold = threshold

    @classmethod
    def build(cls, options: Section, bundle: Bundle) -> WebhookCheck:
        url = options.string("url")
        if not url.startswith(("http://", "https://")):
            options.fail("url", f"must be an http:// or https:// URL (got {url!r})")
        timeout_ms = options.number("timeout_ms", 1000.0, minimum=1)
        headers = options.string_map("headers")
        threshold = options.number("threshold", None)
        options.finish()
        if threshold is not None and threshold > 1:
            options.fail("threshold", f"must be between 0 and 1 (got {threshold})")
        return cls(url, timeout_ms / 1000, headers, threshold)

    async def inspect_remote(self, subject: Subject) -> Hit | None:
        if subject.http is None:
            raise WebhookError("no HTTP client available for webhook checks")
        exchange = subject.exchange
        payload = {
            "phase": subject.phase,
            "model": exchange.model,
            "app": exchange.principal.app,
            "tenant": exchange.principal.tenant,
            "request_id": exchange.request_id,
            "texts": [part.text for part in subject.parts],
        }
        try:
            async with subject.http.post(
                self.url, data=orjson.dumps(payload), headers=self.headers, timeout=self.timeout, allow_redirects=False
            ) as response:
                if response.status != 200:
                    raise WebhookError(f"classifier answered HTTP {response.status}")
                answer = orjson.loads(await response.read())
        except asyncio.TimeoutError:
            raise WebhookError(f"classifier did not answer within {self.timeout.total:g} s") from None
        except aiohttp.ClientError as exc:
            raise WebhookError(f"classifier unreachable ({type(exc).__name__})") from None
        except orjson.JSONDecodeError:
            raise WebhookError("classifier answered something that is not JSON") from None
        return self._judge(answer)

    def _judge(self, answer: Any) -> Hit | None:
        if isinstance(answer, dict) and isinstance(answer.get("fire"), bool):
            detail = answer.get("detail")
            return Hit(str(detail)[:200] if detail else "classifier fired") if answer["fire"] else None
        if self.threshold is not None and isinstance(answer, dict):
            score = answer.get("score")
            if isinstance(score, (int, float)) and not isinstance(score, bool):
                return Hit(f"classifier score {score:.2f}") if score >= self.threshold else None
        raise WebhookError("classifier answer has no boolean 'fire'" + (" or numeric 'score'" if self.threshold is not None else ""))
