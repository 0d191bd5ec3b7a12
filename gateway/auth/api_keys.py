"""`auth.mode: api_key`: each application has a key; the config holds only its sha256.

A stolen config therefore reveals no key. Keys are long random strings, so one unsalted sha256 is enough
(there is nothing to brute-force), and a dict lookup by digest is constant-time in the key's content.
"""

from __future__ import annotations

import hashlib
import secrets

from multidict import CIMultiDictProxy

from gateway.auth.credentials import CHALLENGE, bearer
from gateway.config.model import ApiKey
from gateway.errors import AuthenticationFailed
from gateway.exchange import Principal


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh application key (`gateway auth new-key`): 256 random bits, recognisable by its prefix."""
    return "gwk_" + secrets.token_urlsafe(32)


class ApiKeyAuthenticator:
    def __init__(self, keys: tuple[ApiKey, ...]) -> None:
        self._principals = {
            key.sha256: Principal(app=key.app, tenant=key.tenant, sub=key.app, roles=frozenset(key.roles)) for key in keys
        }

    def authenticate(self, headers: CIMultiDictProxy[str]) -> Principal:
        principal = self._principals.get(key_digest(bearer(headers)))
        if principal is None:
            raise AuthenticationFailed("Unknown API key.", code="invalid_api_key", headers=CHALLENGE)
        return principal

    def may(self, principal: Principal, role: str, peer: str | None) -> bool:
        return role in principal.roles
