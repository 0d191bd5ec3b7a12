"""`auth.mode: jwt`: bearer tokens from an identity provider, verified with pyjwt.

What an attacker controls is the token, header included, so nothing in the header is trusted to choose
how it is checked: the algorithm must be on the configured allow-list (`none` can never be), the key is
picked by `kid` among keys loaded from local files only (`jku` and `x5u` are never fetched), and each key
is bound to its own algorithm family, so an RSA public key can never be used as an HMAC secret (the
RS256/HS256 confusion). `exp` is required; `iss`, `aud` and `nbf` are checked with a small leeway.

Verifying a signature costs tens of microseconds; a token seen before is answered from a small cache
until it expires, so a client reusing its token pays once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import jwt
import orjson
from multidict import CIMultiDictProxy

from gateway.auth.credentials import CHALLENGE, bearer
from gateway.config.model import ClaimsMap, JwtConfig
from gateway.errors import AuthenticationFailed
from gateway.exchange import Principal

CACHE_SIZE = 10_000
_FAMILIES = {"HS": "oct", "RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


class JwtConfigError(ValueError):
    """The configured keys cannot be used (missing file, wrong key type)."""


def _family(algorithm: str) -> str:
    return _FAMILIES[algorithm[:2]]


def _key_type(key: Any) -> str:
    name = type(key).__name__
    for marker, family in (("RSA", "RSA"), ("EllipticCurve", "EC"), ("Ed25519", "OKP"), ("Ed448", "OKP")):
        if marker in name:
            return family
    return "oct" if isinstance(key, (bytes, str)) else "?"


def load_keys(config: JwtConfig) -> dict[str | None, Any]:
    """Keys by kid (None: the only key, used when a token names no kid). Blocking: call at start-up."""
    if config.secret:
        return {None: config.secret.reveal().encode()}
    try:
        if config.public_key_file is not None:
            from cryptography.hazmat.primitives.serialization import load_pem_public_key  # noqa: PLC0415

            return {None: load_pem_public_key(config.public_key_file.read_bytes())}
        assert config.jwks_file is not None
        keys: dict[str | None, Any] = {}
        for item in orjson.loads(config.jwks_file.read_bytes()).get("keys", []):
            jwk = jwt.PyJWK(item)
            keys[item.get("kid")] = jwk.key
        if not keys:
            raise JwtConfigError(f"{config.jwks_file}: no keys")
        return keys
    except OSError as exc:
        raise JwtConfigError(f"{exc.filename}: {exc.strerror}") from None
    except (ValueError, jwt.PyJWKError, jwt.InvalidKeyError) as exc:
        raise JwtConfigError(f"{config.jwks_file or config.public_key_file}: not a usable key ({exc})") from None


class JwtAuthenticator:
    def __init__(self, config: JwtConfig, claims: ClaimsMap) -> None:
        self.config = config
        self.claims = claims
        self._keys = load_keys(config)
        self._algorithms = frozenset(config.algorithms)
        self._cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        for algorithm in config.algorithms:
            family = _family(algorithm)
            if not any(_key_type(key) == family for key in self._keys.values()):
                raise JwtConfigError(f"auth.jwt: no {family} key for {algorithm}")

    def authenticate(self, headers: CIMultiDictProxy[str]) -> Principal:
        token = bearer(headers)
        cached = self._cache.get(token)
        if cached is not None and cached[0] > time.time():
            self._cache.move_to_end(token)
            return cached[1]
        claims = self._verify(token)
        principal = self._principal(claims)
        self._cache[token] = (float(claims["exp"]), principal)
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return principal

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise _denied("The token is not a well-formed JWT.") from None
        algorithm = header.get("alg")
        if algorithm not in self._algorithms:
            raise _denied(f"Token algorithm {algorithm!r} is not accepted.")
        key = self._keys.get(header.get("kid")) if header.get("kid") is not None else self._keys.get(None)
        if key is None and header.get("kid") is None and len(self._keys) == 1:
            key = next(iter(self._keys.values()))
        if key is None:
            raise _denied("The token's key id is not known.")
        if _key_type(key) != _family(algorithm):
            raise _denied(f"The token's key does not fit {algorithm}.")  # no RS256 key as an HS256 secret, ever
        try:
            return jwt.decode(
                token, key=key, algorithms=[algorithm], audience=self.config.audience, issuer=self.config.issuer,
                leeway=self.config.leeway_s, options={"require": ["exp"], "verify_aud": self.config.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise _denied("The token has expired.", "token_expired") from None
        except jwt.ImmatureSignatureError:
            raise _denied("The token is not valid yet.") from None
        except jwt.InvalidAudienceError:
            raise _denied("The token is for another audience.") from None
        except jwt.InvalidIssuerError:
            raise _denied("The token is from another issuer.") from None
        except jwt.InvalidTokenError as exc:
            raise _denied(f"The token is not valid ({type(exc).__name__}).") from None

    def _principal(self, claims: dict[str, Any]) -> Principal:
        app = claims.get(self.claims.app)
        if not isinstance(app, str) or not app:
            raise _denied(f"The token has no {self.claims.app!r} claim to name the app.")
        tenant = claims.get(self.claims.tenant)
        roles = claims.get(self.claims.roles) or []
        if isinstance(roles, str):
            roles = roles.split()
        return Principal(
            app=app, tenant=str(tenant) if tenant is not None else None, sub=claims.get("sub"),
            roles=frozenset(str(role) for role in roles if isinstance(role, (str, int))), claims=claims,
        )

    def may(self, principal: Principal, role: str, peer: str | None) -> bool:
        return role in principal.roles


def _denied(message: str, code: str = "invalid_token") -> AuthenticationFailed:
    return AuthenticationFailed(message, code=code, headers=CHALLENGE)
