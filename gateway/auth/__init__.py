"""Identity: who is calling, from the request's credentials."""

from __future__ import annotations

from typing import Protocol

from multidict import CIMultiDictProxy

from gateway.exchange import ANONYMOUS, Principal


class Authenticator(Protocol):
    def authenticate(self, headers: CIMultiDictProxy[str]) -> Principal:
        """The caller's principal; raises `AuthenticationFailed` for missing or bad credentials."""


class NoAuth:
    """`auth.mode: none`: every caller is the anonymous principal, whatever it sends."""

    def authenticate(self, headers: CIMultiDictProxy[str]) -> Principal:
        return ANONYMOUS
