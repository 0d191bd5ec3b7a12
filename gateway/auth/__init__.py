"""Identity: who is calling, from the request's credentials."""

from __future__ import annotations

from typing import Protocol

from multidict import CIMultiDictProxy

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
