"""Response headers every gateway answer carries, and the one place errors become HTTP responses."""

from __future__ import annotations

from aiohttp import web

from gateway.errors import GatewayError
from gateway.exchange import Exchange

JSON = "application/json"


def plain_headers(request_id: str, policy_version: str) -> dict[str, str]:
    """What every gateway answer carries, proxied or not."""
    return {"x-request-id": request_id, "x-gateway-policy-version": policy_version}


def gateway_headers(exchange: Exchange, policy_version: str) -> dict[str, str]:
    headers = plain_headers(exchange.request_id, policy_version)
    if exchange.endpoint is not None:
        headers["x-gateway-decision"] = exchange.decision
    if exchange.target:
        headers["x-gateway-target"] = exchange.target
    if exchange.degraded:
        headers["x-gateway-degraded"] = "true"
    return headers


def error_response(error: GatewayError, exchange: Exchange, policy_version: str) -> web.Response:
    headers = gateway_headers(exchange, policy_version)
    headers.update(error.headers)
    return web.Response(status=error.status, body=error.body(exchange.request_id), content_type=JSON, headers=headers)
