"""Signed policy bundles: a signature approves exactly one bundle version, and nothing else gets through."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.policy.bundle import SIGNATURE_FILE, read_bundle
from gateway.policy.signing import (
    TOKEN_TYPE,
    Approval,
    BundleNotSigned,
    SignatureError,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_keys,
    sign_bundle,
    verify_bundle,
    write_signature,
)

B64URL_THUMBPRINT = re.compile(r"^[A-Za-z0-9_-]{43}$")


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    root = tmp_path / "policies"
    (root / "schemas").mkdir(parents=True)
    (root / "pii.yaml").write_text("rules:\n  - id: pii\n    action: redact\n")
    (root / "tools.yml").write_text("rules: []\n")
    (root / "schemas" / "reply.json").write_text('{"type": "object"}\n')
    return root


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Path, Path, str]:
    private, public = tmp_path / "keys" / "secops.pem", tmp_path / "keys" / "secops.pub"
    private.parent.mkdir()
    kid = generate_keypair(private, public)
    return private, public, kid


def sign(root: Path, private: Path, signer: str | None = "alice@example.com") -> str:
    token = sign_bundle(read_bundle(root), private, signer=signer)
    write_signature(read_bundle(root), token)
    return token


def verify(root: Path, public: Path) -> Approval:
    return verify_bundle(read_bundle(root), load_public_keys([public]))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- signing and verifying ---------------------------------------------------------------------------------


def test_sign_then_verify_returns_the_approval(policies: Path, keypair: tuple[Path, Path, str]) -> None:
    private, public, kid = keypair
    before = int(time.time())
    sign(policies, private)
    approval = verify(policies, public)
    assert approval == Approval(
        key_id=kid, signer="alice@example.com", signed_at=approval.signed_at, version=read_bundle(policies).version
    )
    assert before <= approval.signed_at <= int(time.time())


def test_signature_file_format_and_payload(policies: Path, keypair: tuple[Path, Path, str]) -> None:
    private, _, kid = keypair
    bundle = read_bundle(policies)
    token = sign_bundle(bundle, private, signer=None)
    path = write_signature(bundle, token)
    assert path == policies / SIGNATURE_FILE
    assert path.read_text() == token + "\n"
    assert [p.name for p in policies.iterdir() if p.name.startswith(".")] == []  # no temp file left behind
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "EdDSA", "kid": kid, "typ": TOKEN_TYPE}
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert payload["version"] == bundle.version
    assert payload["files"] == {file.path: file.digest for file in bundle.files}
    assert payload["signer"] is None
    assert isinstance(payload["signed_at"], int)


def test_unsigned_signer_is_none(policies: Path, keypair: tuple[Path, Path, str]) -> None:
    private, public, _ = keypair
    sign(policies, private, signer=None)
    assert verify(policies, public).signer is None


def test_resigning_replaces_the_signature(policies: Path, keypair: tuple[Path, Path, str]) -> None:
    private, public, _ = keypair
    sign(policies, private)
    (policies / "pii.yaml").write_text("rules: []\n")
    sign(policies, private, signer="bob")
    assert verify(policies, public).signer == "bob"


# -- the bundle changed after signing ----------------------------------------------------------------------


def test_edited_file_fails_naming_it(policies: Path, keypair: tuple[Path, Path, str]) -> None:
    private, public, _ = keypair
    sign(policies, private)
    (policies / "schemas" / "reply.json").write_text('{"type": "array"}\n')
    with pytest.raises(SignatureError) as caught:
        verify(policies, public)
    message = str(caught.value)
    assert message.startswith(f"{policies / SIGNATURE_FILE}: signature does not match the bundle")
    assert "changed: schemas/reply.json" in message
    assert "\n" not in message


def test_added_file_fails_naming_it(policies: Path, keypair: tuple[Path, Path, str]) -> None:
    private, public, _ = keypair
    sign(policies, private)
    (policies / "allow-all.yaml").write_text("rules: []\n")
    with pytest.raises(SignatureError, match=r"does not match the bundle \(added: allow-all\.yaml\)"):
        verify(policies, public)


def test_removed_file_fails_naming_it(policies: Path, keypair: tuple[Path, Path, str]) -> None:
    private, public, _ = keypair
    sign(policies, private)
    (policies / "pii.yaml").unlink()
    with pytest.raises(SignatureError, match=r"does not match the bundle \(removed: pii\.yaml\)"):
        verify(policies, public)


def test_many_changes_are_summarised_on_one_line(policies: Path, keypair: tuple[Path, Path, str]) -> None:
    private, public, _ = keypair
    sign(policies, private)
    for index in range(8):
        (policies / f"extra{index}.yaml").write_text("rules: []\n")
    with pytest.raises(SignatureError, match=r"added: extra0\.yaml, .*extra4\.yaml and 3 more\)$"):
        verify(policies, public)


def test_signature_file_and_hidden_files_do_not_change_the_version(
    policies: Path, keypair: tuple[Path, Path, str]
) -> None:
    private, public, _ = keypair
    version = read_bundle(policies).version
    sign(policies, private)
    (policies / ".editor.swp").write_text("scratch")
    (policies / ".git").mkdir()
    (policies / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    bundle = read_bundle(policies)
    assert bundle.version == version
    assert SIGNATURE_FILE not in {file.path for file in bundle.files}
    assert verify(policies, public).version == version


# -- missing or untrusted signatures -----------------------------------------------------------------------


def test_unsigned_bundle_fails(policies: Path, keypair: tuple[Path, Path, str]) -> None:
    _, public, _ = keypair
    with pytest.raises(BundleNotSigned, match=r"bundle is not signed") as caught:
        verify(policies, public)
    assert isinstance(caught.value, SignatureError)
    assert str(caught.value).startswith(f"{policies}: ")


def test_unknown_key_fails_naming_the_kid(policies: Path, keypair: tuple[Path, Path, str], tmp_path: Path) -> None:
    _, public, _ = keypair
    other_kid = generate_keypair(tmp_path / "other.pem", tmp_path / "other.pub")
    sign(policies, tmp_path / "other.pem")
    with pytest.raises(SignatureError, match=rf"signed by unknown key '{re.escape(other_kid)}'"):
        verify(policies, public)


def test_verifies_with_any_trusted_key(policies: Path, keypair: tuple[Path, Path, str], tmp_path: Path) -> None:
    _, public, _ = keypair
    other_kid = generate_keypair(tmp_path / "other.pem", tmp_path / "other.pub")
    sign(policies, tmp_path / "other.pem")
    keys = load_public_keys([public, tmp_path / "other.pub"])
    assert verify_bundle(read_bundle(policies), keys).key_id == other_kid


def test_alg_none_is_rejected(policies: Path, keypair: tuple[Path, Path, str]) -> None:
    _, public, kid = keypair
    bundle = read_bundle(policies)
    payload = {"version": bundle.version, "files": {}, "signed_at": 1, "signer": "mallory"}
    header = {"alg": "none", "kid": kid, "typ": TOKEN_TYPE}
    token = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}."
    write_signature(bundle, token)
    with pytest.raises(SignatureError, match=r"algorithm 'none' is not allowed"):
        verify(policies, public)


def test_hs256_with_the_public_key_as_secret_is_rejected(policies: Path, keypair: tuple[Path, Path, str]) -> None:
    """The classic key-confusion forgery: the public key is known to everyone, so HMAC with it is no proof."""
    _, public, kid = keypair
    bundle = read_bundle(policies)
    public_key = load_public_keys([public])[kid]
    payload = json.dumps({"version": bundle.version, "files": {}, "signed_at": 1, "signer": "mallory"}).encode()
    secret = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    forged = jwt.PyJWS().encode(payload, secret, algorithm="HS256", headers={"kid": kid, "typ": TOKEN_TYPE})
    write_signature(bundle, forged)
    with pytest.raises(SignatureError, match=r"algorithm 'HS256' is not allowed"):
        verify(policies, public)


def test_swapped_payload_segment_is_rejected(policies: Path, keypair: tuple[Path, Path, str]) -> None:
    """A payload taken from another valid token (for the edited bundle) does not verify with this signature."""
    private, public, _ = keypair
    original = sign(policies, private)
    (policies / "pii.yaml").write_text("rules: []\n")
    edited_payload = sign_bundle(read_bundle(policies), private).split(".")[1]
    header, _, signature = original.split(".")
    write_signature(read_bundle(policies), f"{header}.{edited_payload}.{signature}")
    with pytest.raises(SignatureError, match=r"signature is not valid for key"):
        verify(policies, public)


def test_wrong_token_type_is_rejected(policies: Path, keypair: tuple[Path, Path, str]) -> None:
    """A JWT made with the same key for some other purpose is not a bundle approval."""
    private, public, kid = keypair
    bundle = read_bundle(policies)
    payload = json.dumps({"version": bundle.version, "files": {}, "signed_at": 1, "signer": None}).encode()
    token = jwt.PyJWS().encode(payload, load_private_key(private), algorithm="EdDSA", headers={"kid": kid})
    write_signature(bundle, token)
    with pytest.raises(SignatureError, match=r"not a policy bundle signature \(typ 'JWT'\)"):
        verify(policies, public)


@pytest.mark.parametrize("content", ["", "not a token\n", "a.b\n", "\u00e9t\u00e9.x.y\n"])
def test_garbage_signature_file_is_rejected(
    policies: Path, keypair: tuple[Path, Path, str], content: str
) -> None:
    _, public, _ = keypair
    (policies / SIGNATURE_FILE).write_text(content, encoding="utf-8")
    with pytest.raises(SignatureError, match=rf"^{re.escape(str(policies / SIGNATURE_FILE))}: not a compact JWS"):
        verify(policies, public)


# -- keys -------------------------------------------------------------------------------------------------


def test_generate_keypair_writes_pem_files_private_0600(keypair: tuple[Path, Path, str]) -> None:
    private, public, kid = keypair
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert key_id(load_private_key(private).public_key()) == kid
    assert list(load_public_keys([public])) == [kid]


def test_generate_keypair_refuses_to_overwrite(keypair: tuple[Path, Path, str]) -> None:
    private, public, _ = keypair
    before = private.read_bytes()
    with pytest.raises(SignatureError, match=r"already exists"):
        generate_keypair(private, public)
    assert private.read_bytes() == before


def test_key_id_is_the_rfc7638_thumbprint() -> None:
    """RFC 8037 appendix A.3: the thumbprint of the example Ed25519 key."""
    x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    public_key = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "="))
    assert key_id(public_key) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    assert B64URL_THUMBPRINT.match(key_id(Ed25519PrivateKey.generate().public_key()))


def test_missing_key_file(tmp_path: Path) -> None:
    missing = tmp_path / "keys" / "secops.pub"
    with pytest.raises(SignatureError, match=rf"^{re.escape(str(missing))}: key file not found$"):
        load_public_keys([missing])
    with pytest.raises(SignatureError, match=r"key file not found"):
        load_private_key(missing)


def test_rsa_key_files_are_rejected(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = tmp_path / "rsa.pem"
    public = tmp_path / "rsa.pub"
    private.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public.write_bytes(
        rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(SignatureError, match=rf"^{re.escape(str(public))}: not an Ed25519 public key \(found RSA\)$"):
        load_public_keys([public])
    with pytest.raises(SignatureError, match=rf"^{re.escape(str(private))}: not an Ed25519 private key \(found RSA\)$"):
        load_private_key(private)


def test_garbage_key_files_are_rejected(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pub"
    garbage.write_bytes(b"\x00\x01 definitely not PEM")
    with pytest.raises(SignatureError, match=rf"^{re.escape(str(garbage))}: not a PEM public key$"):
        load_public_keys([garbage])
    with pytest.raises(SignatureError, match=rf"^{re.escape(str(garbage))}: not a PEM private key$"):
        load_private_key(garbage)


def test_swapped_key_files_are_explained(keypair: tuple[Path, Path, str]) -> None:
    private, public, _ = keypair
    with pytest.raises(SignatureError, match=r"is a private key; configure the public key"):
        load_public_keys([private])
    with pytest.raises(SignatureError, match=r"not a PEM private key \(this is a public key\)"):
        load_private_key(public)


def test_encrypted_private_key_is_rejected(tmp_path: Path) -> None:
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"hunter2"),
        )
    )
    with pytest.raises(SignatureError, match=r"encrypted private keys are not supported"):
        load_private_key(encrypted)


def test_sign_with_bad_key_path_fails_clearly(policies: Path, tmp_path: Path) -> None:
    with pytest.raises(SignatureError, match=r"key file not found"):
        sign_bundle(read_bundle(policies), tmp_path / "nope.pem")


def test_empty_bundle_can_be_signed(tmp_path: Path, keypair: tuple[Path, Path, str]) -> None:
    private, public, kid = keypair
    root = tmp_path / "empty"
    root.mkdir()
    sign(root, private)
    assert verify(root, public).key_id == kid
