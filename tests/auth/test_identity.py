"""Identity through the running gateway: JWTs (and every attack on them), API keys, roles, tenant policies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import openai
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.auth.api_keys import key_digest
from gateway.testing.upstream import FakeUpstream
from policy_support import write_policies
from support import audit_record_for, raw_request, run_gateway, sdk_client

ISSUER, AUDIENCE = "https://idp.test", "gateway"
PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = PRIVATE.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def jwt_config(tmp_path: Path) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(PRIVATE.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]}))
    return {"auth": {"mode": "jwt", "jwt": {"algorithms": ["RS256"], "issuer": ISSUER, "audience": AUDIENCE, "jwks_file": str(jwks)}}}


def token(**overrides: Any) -> str:
    now = int(time.time())
    claims = {"sub": "support-bot", "tenant": "acme", "roles": ["admin"], "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300}
    headers = {"kid": overrides.pop("kid", "k1")}
    claims.update(overrides)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, PRIVATE, algorithm="RS256", headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_hs256_with_the_public_key() -> str:
    """The RS256/HS256 key-confusion forgery: HMAC-signed with the (public) RSA key as the secret."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    payload = b64(json.dumps({"sub": "attacker", "roles": ["admin"], "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300}).encode())
    signature = hmac.new(PUBLIC_PEM, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def tampered() -> str:
    header, _, signature = token().split(".")
    payload = b64(json.dumps({"sub": "support-bot", "roles": ["admin", "reviewer"], "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300}).encode())
    return f"{header}.{payload}.{signature}"


ATTACKS = {
    "alg none": lambda: jwt.encode({"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300}, None, algorithm="none"),
    "key confusion": forged_hs256_with_the_public_key,
    "expired": lambda: token(exp=int(time.time()) - 3600),
    "not yet valid": lambda: token(nbf=int(time.time()) + 3600),
    "wrong issuer": lambda: token(iss="https://evil.test"),
    "wrong audience": lambda: token(aud="someone-else"),
    "unknown kid": lambda: token(kid="k9"),
    "tampered payload": tampered,
    "no exp": lambda: token(exp=None),
    "garbage": lambda: "not.a.jwt",
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_every_jwt_attack_is_a_401_that_reaches_no_provider(make_gateway: Any, upstream: FakeUpstream, tmp_path: Path, attack: str) -> None:
    gateway = make_gateway(**jwt_config(tmp_path))
    with sdk_client(gateway, api_key=ATTACKS[attack]()) as client, pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.response.headers["www-authenticate"] == "Bearer"
    assert upstream.received == []


def test_a_valid_token_is_the_principal_of_the_exchange(make_gateway: Any, upstream: FakeUpstream, tmp_path: Path, store_dir: Path) -> None:
    gateway = make_gateway(**jwt_config(tmp_path))
    with sdk_client(gateway, api_key=token()) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
        assert [model.id for model in client.models.list()]
    assert "Bearer ey" not in json.dumps(upstream.received[-1].headers)  # the client's token never goes upstream
    record = audit_record_for(store_dir, raw.headers["x-request-id"])
    assert record["principal"] == {"app": "support-bot", "tenant": "acme", "sub": "support-bot"}
    assert raw_request(f"{gateway.url}/v1/models", method="GET").status == 401


def test_roles_guard_the_admin_endpoints(make_gateway: Any, tmp_path: Path) -> None:
    gateway = make_gateway(**jwt_config(tmp_path))
    admin = raw_request(f"{gateway.url}/admin/routes", method="GET", headers={"Authorization": f"Bearer {token()}"})
    plain = raw_request(f"{gateway.url}/admin/routes", method="GET", headers={"Authorization": f"Bearer {token(roles=[])}"})
    nobody = raw_request(f"{gateway.url}/admin/routes", method="GET")
    assert admin.status == 200
    assert plain.status == 403 and plain.json()["error"]["code"] == "admin_required"
    assert nobody.status == 401  # on the loopback, but with identities configured only roles count


def test_a_policy_scoped_to_a_tenant_applies_to_that_tenant_only(make_gateway: Any, upstream: FakeUpstream, tmp_path: Path) -> None:
    write_policies(tmp_path / "policies", acme="""
        match: {claims: {tenant: [acme]}}
        rules:
          - {id: acme-no-pets, phase: request, check: {keywords: {words: [hamster]}}, action: block}
        tests:
          - name: acme may not mention hamsters
            principal: {tenant: acme}
            request: {model: gpt-test, messages: [{role: user, content: my hamster}]}
            expect: {action: block, rule: acme-no-pets}
    """)
    gateway = make_gateway(**jwt_config(tmp_path))
    with sdk_client(gateway, api_key=token()) as acme, pytest.raises(openai.PermissionDeniedError):
        acme.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "my hamster"}])
    with sdk_client(gateway, api_key=token(tenant="globex")) as globex:
        globex.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "my hamster"}])


def test_api_keys_identify_apps_by_their_hash(make_gateway: Any, upstream: FakeUpstream, store_dir: Path) -> None:
    key = "gwk_billing-test-key-0123456789abcdef"
    gateway = make_gateway(auth={"mode": "api_key", "api_keys": [{"sha256": key_digest(key), "app": "billing", "tenant": "acme", "roles": ["auditor"]}]})
    with sdk_client(gateway, api_key=key) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert audit_record_for(store_dir, raw.headers["x-request-id"])["principal"]["app"] == "billing"
    with sdk_client(gateway, api_key="gwk_wrong") as client, pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    auditor = {"Authorization": f"Bearer {key}"}
    assert raw_request(f"{gateway.url}/admin/audit/{raw.headers['x-request-id']}", method="GET", headers=auditor).status == 200
    assert raw_request(f"{gateway.url}/admin/policies", method="GET", headers=auditor).status == 403  # admin only


def test_new_key_prints_a_key_and_only_its_hash_for_the_config(tmp_path: Path) -> None:
    result = run_gateway("auth", "new-key", "--app", "billing", "--role", "auditor", cwd=tmp_path)
    key = result.stdout.split("it is not stored anywhere): ")[1].split()[0]
    assert key.startswith("gwk_") and f"sha256: {key_digest(key)}, app: billing, roles: [auditor]" in result.stdout
