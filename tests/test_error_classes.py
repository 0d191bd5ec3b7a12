"""The error hierarchy: every class answers with its DESIGN.md status and type, in the OpenAI error shape."""

from __future__ import annotations

import orjson
import pytest

from gateway import errors
from gateway.errors import GatewayError, UpstreamRejected

ROWS = [
    (errors.InvalidRequest, 400, "invalid_request_error", "invalid_request"),
    (errors.UnknownModel, 400, "invalid_request_error", "model_not_found"),
    (errors.BodyTooLarge, 413, "invalid_request_error", "body_too_large"),
    (errors.NotFound, 404, "invalid_request_error", "not_found"),
    (errors.AuthenticationFailed, 401, "authentication_error", "invalid_credentials"),
    (errors.PolicyViolation, 403, "policy_violation", "policy_violation"),
    (errors.RateLimited, 429, "rate_limit_error", "rate_limited"),
    (errors.UpstreamError, 502, "upstream_error", "upstream_error"),
    (errors.UpstreamConnectError, 502, "upstream_error", "upstream_connect_error"),
    (errors.UpstreamTimeout, 504, "upstream_error", "upstream_timeout"),
    (errors.UpstreamBadResponse, 502, "upstream_error", "upstream_bad_response"),
    (errors.UpstreamStatusError, 502, "upstream_error", "upstream_status_error"),
    (errors.UpstreamUnavailable, 503, "upstream_error", "upstream_unavailable"),
]


@pytest.mark.parametrize(("error_class", "status", "error_type", "code"), ROWS)
def test_status_type_and_default_code(error_class: type[GatewayError], status: int, error_type: str, code: str) -> None:
    error = error_class("something went wrong")
    assert (error.status, error.type, error.code) == (status, error_type, code)
    assert str(error) == "something went wrong"


def test_body_is_the_openai_error_shape() -> None:
    error = errors.PolicyViolation("Secrets must not be sent.", code="no-secrets", policy="pii", rule="no-secrets", param="messages")
    body = orjson.loads(error.body("req-1"))
    assert body == {
        "error": {
            "message": "Secrets must not be sent.",
            "type": "policy_violation",
            "code": "no-secrets",
            "param": "messages",
            "request_id": "req-1",
            "policy": "pii",
            "rule": "no-secrets",
            "review_id": None,
        }
    }


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(400, "invalid_request_error"), (404, "invalid_request_error"), (409, "invalid_request_error"), (413, "invalid_request_error"), (422, "invalid_request_error"), (429, "rate_limit_error"), (418, "upstream_error")],
)
def test_upstream_rejected_keeps_the_provider_status(status: int, error_type: str) -> None:
    error = UpstreamRejected(status, "provider said no", headers={"retry-after": "1"})
    assert (error.status, error.type, error.code) == (status, error_type, "upstream_rejected")
    assert error.headers == {"retry-after": "1"}
    assert isinstance(error, errors.UpstreamError)


def test_rejected_type_is_per_instance() -> None:
    UpstreamRejected(429, "limited")
    assert UpstreamRejected(400, "bad").type == "invalid_request_error"
    assert errors.UpstreamError.type == "upstream_error"  # the class default is untouched
