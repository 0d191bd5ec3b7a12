"""Every failure the gateway reports, and the one place that turns them into OpenAI-shaped errors.

    GatewayError                      any failure answered to a client
    ├── InvalidRequest           400  malformed JSON, bad content type, invalid UTF-8, schema errors
    │   ├── UnknownModel         400  no route for the requested model
    │   └── BodyTooLarge         413  body over limits.max_body_bytes
    ├── NotFound                 404  no such endpoint
    ├── AuthenticationFailed     401  missing, invalid or expired credentials
    ├── Forbidden                403  authenticated, but without the role an endpoint needs
    ├── Conflict                 409  the target's state forbids it (a review already decided or claimed)
    ├── PolicyViolation          403  a rule blocked the exchange (code = rule id)
    │   ├── ReviewPending        403  a rule escalated; the review is open (review_pending, review_id set)
    │   ├── ReviewRejected       403  a reviewer rejected it (review_rejected)
    │   └── ReviewTimeout        403  the review's deadline passed with on_timeout: block (review_timeout)
    ├── RateLimited              429  limits and budgets (retry-after)
    ├── ServiceUnavailable       503  the gateway itself cannot take the exchange (audit backlog full)
    └── UpstreamError            502  every target failed (code says how)
        ├── UpstreamConnectError 502  connection refused or reset before a reply
        ├── UpstreamTimeout      504  connect, first-byte, idle or total deadline passed
        ├── UpstreamBadResponse  502  the provider answered something that is not the protocol
        ├── UpstreamStatusError  502  the provider answered 5xx or refused our own credentials
        ├── UpstreamRejected     4xx  the provider refused the request itself (400, 404, 422, 429...)
        └── UpstreamUnavailable  503  no target can be tried

Adapters map their client library's exceptions to the most specific class here; handlers never build
error bodies themselves, they raise, and `GatewayError.body()` is the only serialiser.
"""

from __future__ import annotations

from typing import Any

import orjson


class GatewayError(Exception):
    """A failure with an HTTP status and an OpenAI error `type`; `code` narrows it for machines."""

    status: int = 500
    type: str = "api_error"
    default_code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        policy: str | None = None,
        rule: str | None = None,
        review_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param
        self.policy = policy
        self.rule = rule
        self.review_id = review_id
        self.headers = headers or {}

    def payload(self, request_id: str) -> dict[str, Any]:
        """The `{"error": {...}}` object, as OpenAI SDKs expect it."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "code": self.code,
                "param": self.param,
                "request_id": request_id,
                "policy": self.policy,
                "rule": self.rule,
                "review_id": self.review_id,
            }
        }

    def body(self, request_id: str) -> bytes:
        return orjson.dumps(self.payload(request_id))


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    default_code = "invalid_request"


class UnknownModel(InvalidRequest):
    default_code = "model_not_found"


class BodyTooLarge(InvalidRequest):
    status = 413
    default_code = "body_too_large"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    default_code = "not_found"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_credentials"


class Forbidden(GatewayError):
    status = 403
    type = "permission_error"
    default_code = "forbidden"


class Conflict(GatewayError):
    status = 409
    type = "conflict_error"
    default_code = "conflict"


class PolicyViolation(GatewayError):
    status = 403
    type = "policy_violation"
    default_code = "policy_violation"


class ReviewPending(PolicyViolation):
    type = "review_pending"
    default_code = "review_pending"


class ReviewRejected(PolicyViolation):
    type = "review_rejected"
    default_code = "review_rejected"


class ReviewTimeout(PolicyViolation):
    type = "review_timeout"
    default_code = "review_timeout"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limited"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "service_unavailable"
    default_code = "service_unavailable"


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    default_code = "upstream_error"


class UpstreamConnectError(UpstreamError):
    default_code = "upstream_connect_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    default_code = "upstream_timeout"


class UpstreamBadResponse(UpstreamError):
    default_code = "upstream_bad_response"


class UpstreamStatusError(UpstreamError):
    default_code = "upstream_status_error"


class UpstreamUnavailable(UpstreamError):
    status = 503
    default_code = "upstream_unavailable"


class UpstreamRejected(UpstreamError):
    """The provider refused the request itself; the client sees the provider's status and message.

    Passing 400/404/422 through lets SDKs raise the same exception they would against the provider
    directly (BadRequestError, NotFoundError...). A provider 429 becomes our `rate_limit_error`.
    """

    def __init__(self, status: int, message: str, *, code: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, code=code or "upstream_rejected", **kwargs)
        self.status = status
        if status == 429:
            self.type = RateLimited.type
        elif status in (400, 404, 409, 413, 422):
            self.type = InvalidRequest.type
