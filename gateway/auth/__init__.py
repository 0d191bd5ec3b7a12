"""Identity: who is calling, from the request's credentials."""

from __future__ import annotations

from typing import Protocol

from multidict import CIMultiDictProxy

from gateway.config.model import AuthConfig
from gateway.exchange import ANONYMOUS, Principal


class Authenticator(Protocol):
    def authenticate(self, headers: CIMultiDictProxy[str]) -> Principal:
        """The caller's principal; raises `AuthenticationFailed` for missing or bad credentials."""

    def may(self, principal: Principal, role: str, peer: str | None) -> bool:
        """Whether the caller may use endpoints that need `role` (admin, auditor, reviewer)."""


LOOPBACK = frozenset({"127.0.0.1", "::1"})


class NoAuth:
    """`auth.mode: none`: every caller is the anonymous principal, whatever it sends.

    With no identities there are no roles to check, so role-gated endpoints (admin, review) answer
    only callers on the gateway's own host: an operator there can reload policies, nobody else can.
    """

    def authenticate(self, headers: CIMultiDictProxy[str]) -> Principal:
        return ANONYMOUS

    def may(self, principal: Principal, role: str, peer: str | None) -> bool:
        return peer in LOOPBACK


def build_authenticator(config: AuthConfig) -> Authenticator:
    """The authenticator `auth.mode` names (JWT keys are read from their files here, at start-up)."""
    if config.mode == "jwt":
        from gateway.auth.jwt_tokens import JwtAuthenticator  # noqa: PLC0415 - pyjwt only when tokens are used

        assert config.jwt is not None, "the config loader requires auth.jwt with mode jwt"
        return JwtAuthenticator(config.jwt, config.claims)
    if config.mode == "api_key":
        from gateway.auth.api_keys import ApiKeyAuthenticator  # noqa: PLC0415 - as above, for symmetry

        return ApiKeyAuthenticator(config.api_keys)
    return NoAuth()
