"""Response headers every gateway answer carries, and the one place errors become HTTP responses."""

from __future__ import annotations

from aiohttp import web

from gateway.errors import GatewayError
from gateway.exchange import Exchange
from gateway.http.request_body import request_id_of
from gateway.pipeline import Pipeline

JSON = "application/json"


def plain_headers(request_id: str, policy_version: str) -> dict[str, str]:
    """What every gateway answer carries, proxied or not."""
    return {"x-request-id": request_id, "x-gateway-policy-version": policy_version}


def reply_headers(request: web.Request, pipeline: Pipeline) -> dict[str, str]:
    """`plain_headers` for an answer that is not a proxied exchange (models, health, metrics)."""
    return plain_headers(request_id_of(request, pipeline.ids), pipeline.policy.version)


def request_error(request: web.Request, pipeline: Pipeline, error: GatewayError) -> web.Response:
    """The error answer for a request that never became a model exchange (a 404, an unknown model id)."""
    return error_response(error, Exchange(request_id_of(request, pipeline.ids), None), pipeline.policy.version)


def gateway_headers(exchange: Exchange, policy_version: str) -> dict[str, str]:
    headers = plain_headers(exchange.request_id, policy_version)
    if exchange.endpoint is not None:
        headers["x-gateway-decision"] = exchange.decision
    if exchange.target:
        headers["x-gateway-target"] = exchange.target
    if exchange.degraded:
        headers["x-gateway-degraded"] = "true"
    if exchange.limit_headers:
        headers.update(exchange.limit_headers)
    return headers


def error_response(error: GatewayError, exchange: Exchange, policy_version: str) -> web.Response:
    headers = gateway_headers(exchange, policy_version)
    headers.update(error.headers)
    return web.Response(status=error.status, body=error.body(exchange.request_id), content_type=JSON, headers=headers)
