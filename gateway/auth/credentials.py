"""The caller's credential: `Authorization: Bearer <token or key>`, what the openai SDK sends as `api_key`."""

from __future__ import annotations

from multidict import CIMultiDictProxy

from gateway.errors import AuthenticationFailed

CHALLENGE = {"www-authenticate": "Bearer"}


def bearer(headers: CIMultiDictProxy[str]) -> str:
    value = headers.get("Authorization")
    if not value:
        raise AuthenticationFailed("No credentials: send 'Authorization: Bearer <key or token>' (the SDK's api_key).", code="missing_credentials", headers=CHALLENGE)
    scheme, _, credential = value.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise AuthenticationFailed("The Authorization header must be 'Bearer <key or token>'.", code="invalid_credentials", headers=CHALLENGE)
    return credential
