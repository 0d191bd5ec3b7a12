"""Role-gated endpoints (admin, auditor, reviewer): the check, the caller's name, and the error answer.

Every role-gated handler is wrapped once, at routing, by `guarded`: it authenticates the caller, checks
the role (`Authenticator.may`), hands the handler the caller's principal, and turns any `GatewayError`
the handler raises into the OpenAI-shaped answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.errors import Forbidden, GatewayError
from gateway.exchange import ANONYMOUS, Principal
from gateway.http.headers import request_error
from gateway.pipeline import Pipeline

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PrincipalHandler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]


def authorize(pipeline: Pipeline, request: web.Request, *roles: str) -> Principal:
    """The caller, if they hold one of `roles`; `AuthenticationFailed` or `Forbidden` otherwise."""
    principal = pipeline.auth.authenticate(request.headers)
    if not any(pipeline.auth.may(principal, role, request.remote) for role in roles):
        raise Forbidden(f"This endpoint needs the {' or '.join(roles)} role.", code=f"{roles[0]}_required")
    return principal


def guarded(pipeline: Pipeline, handler: PrincipalHandler, *roles: str) -> Handler:
    """The handler behind its role check; any GatewayError it raises becomes the OpenAI-shaped answer."""

    async def guarded_handler(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request, authorize(pipeline, request, *roles))
        except GatewayError as error:
            return request_error(request, pipeline, error)

    return guarded_handler


def actor(principal: Principal, request: web.Request) -> str:
    """Who did it, for the audit trail: the caller's identity (sub, else app); with `auth.mode: none`
    there is no identity, only the (loopback) address the action came from."""
    if principal is ANONYMOUS:
        return f"local@{request.remote or 'unknown'}"
    return principal.sub or principal.app
