"""Signed policy bundles ("approvals"): who approved which exact bundle version, checked before it is loaded.

A signature is a compact JWS (EdDSA over Ed25519) stored as `bundle.jws` in the bundle root. Its payload
names the bundle `version` (the sha256 of the canonical manifest, which covers every file), so the
signature approves content, not a moment in time: any edit, addition or removal after signing breaks it.
The per-file digests in the payload are not what is verified (the version is); they are there so a
mismatch can say *which* files changed instead of only "something did".

Keys are identified by their RFC 7638 JWK thumbprint, so the `kid` in a token and the key id written to
audit records are derived from the key itself: no registry of names to keep in sync, and a renamed key
file keeps its id.

Only EdDSA is accepted when verifying, whatever the token's header says: the header is attacker
controlled, and honouring it is how "alg: none" and HS256-with-the-public-key forgeries get through.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.policy.bundle import SIGNATURE_FILE, Bundle

ALGORITHM = "EdDSA"
TOKEN_TYPE = "gateway-policy-bundle+jws"
MAX_SIGNATURE_BYTES = 4 * 1024 * 1024  # the payload lists every file; far above any reviewed bundle
MAX_KEY_BYTES = 64 * 1024  # an Ed25519 PEM is ~120 bytes; a huge "key" file is a wrong path
_MAX_LISTED_PATHS = 5  # enough to point at the edit without turning the error into a page

# One PyJWS instance that knows only EdDSA: even a bug in the checks below cannot make it accept HS*/none.
_JWS = jwt.PyJWS(algorithms=[ALGORITHM])


class SignatureError(Exception):
    """The bundle's signature, or a key used to make or check it, is missing or wrong (one-line message)."""


class BundleNotSigned(SignatureError):
    """The bundle has no `bundle.jws`: distinct so a caller that does not require signatures can allow it."""


@dataclass(frozen=True, slots=True)
class Approval:
    """Who approved the loaded bundle: recorded with the policy version in audit records."""

    key_id: str
    signer: str | None
    signed_at: int
    version: str


def key_id(public_key: Ed25519PublicKey) -> str:
    """The RFC 7638 JWK thumbprint of `public_key` (43 base64url characters).

    Derived from the key alone, so the same key has the same id on every gateway and in every audit
    record, and it matches what standard JOSE tooling reports for the key.
    """
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    # RFC 7638 §3: required members only, lexicographic order, no whitespace.
    canonical = '{"crv":"Ed25519","kty":"OKP","x":"%s"}' % _b64url(raw)
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an unencrypted PKCS8 PEM Ed25519 private key (blocking I/O)."""
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography signals "encrypted, no password given" with TypeError
        raise SignatureError(f"{path}: encrypted private keys are not supported") from None
    except (ValueError, UnsupportedAlgorithm):
        hint = " (this is a public key)" if b"PUBLIC KEY-----" in data else ""
        raise SignatureError(f"{path}: not a PEM private key{hint}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path}: not an Ed25519 private key ({_key_kind(key)})")
    return key


def load_public_keys(paths: Sequence[Path]) -> dict[str, Ed25519PublicKey]:
    """Read SubjectPublicKeyInfo PEM Ed25519 public keys, keyed by key id (blocking I/O)."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        data = _read_key_file(path)
        if b"PRIVATE KEY-----" in data:
            # Say so explicitly: a private key copied to where public keys are trusted is a leak to fix.
            raise SignatureError(f"{path}: is a private key; configure the public key (.pub) instead")
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm):
            raise SignatureError(f"{path}: not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise SignatureError(f"{path}: not an Ed25519 public key ({_key_kind(key)})")
        keys[key_id(key)] = key
    return keys


def sign_bundle(bundle: Bundle, private_key_path: Path, *, signer: str | None = None) -> str:
    """A compact JWS approving exactly `bundle.version`; write it with `write_signature`."""
    private_key = load_private_key(private_key_path)
    payload = {
        "version": bundle.version,
        "files": {file.path: file.digest for file in bundle.files},
        "signed_at": int(time.time()),
        "signer": signer,
    }
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    headers = {"kid": key_id(private_key.public_key()), "typ": TOKEN_TYPE}
    return _JWS.encode(body, private_key, algorithm=ALGORITHM, headers=headers)


def write_signature(bundle: Bundle, token: str) -> Path:
    """Write `token` as `<root>/bundle.jws`, replacing any previous signature atomically.

    Atomic because a gateway may be watching the directory: it must see the old signature or the new
    one, never a half-written file. The temporary name is hidden, so `read_bundle` ignores it.
    """
    target = bundle.root / SIGNATURE_FILE
    temporary = bundle.root / f".{SIGNATURE_FILE}.{os.getpid()}.tmp"
    try:
        temporary.write_text(token.strip() + "\n", encoding="ascii")
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise SignatureError(f"{target}: cannot write signature: {exc.strerror or exc}") from None
    return target


def verify_bundle(bundle: Bundle, keys: Mapping[str, Ed25519PublicKey]) -> Approval:
    """Check `<root>/bundle.jws` approves exactly this bundle with one of `keys` (blocking I/O)."""
    path = bundle.root / SIGNATURE_FILE
    token = _read_signature(bundle.root, path)
    try:
        header = _JWS.get_unverified_header(token)
    except jwt.PyJWTError:
        raise SignatureError(f"{path}: not a compact JWS") from None

    # Checked before anything is verified, and against constants, never against what the header claims.
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise SignatureError(f"{path}: algorithm {alg!r} is not allowed (only {ALGORITHM})")
    if header.get("typ") != TOKEN_TYPE:
        # A token made with the same key for another purpose must not count as a bundle approval.
        raise SignatureError(f"{path}: not a policy bundle signature (typ {header.get('typ')!r})")
    if "crit" in header:
        raise SignatureError(f"{path}: unsupported critical header fields {header['crit']!r}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise SignatureError(f"{path}: signature has no key id (kid)")
    public_key = keys.get(kid)
    if public_key is None:
        raise SignatureError(f"{path}: signed by unknown key {kid!r} (not among the trusted public keys)")

    try:
        body = _JWS.decode(token, public_key, algorithms=[ALGORITHM])
    except jwt.InvalidSignatureError:
        raise SignatureError(f"{path}: signature is not valid for key {kid!r} (token altered?)") from None
    except jwt.PyJWTError as exc:
        raise SignatureError(f"{path}: cannot verify signature: {exc}") from None

    payload = _parse_payload(path, body)
    version = payload["version"]
    if version != bundle.version:
        raise SignatureError(f"{path}: signature does not match the bundle ({_describe_changes(bundle, payload)})")
    return Approval(key_id=kid, signer=payload["signer"], signed_at=payload["signed_at"], version=version)


def generate_keypair(private_path: Path, public_path: Path) -> str:
    """Create a new Ed25519 key pair as PEM files (private 0600) and return its key id.

    Refuses to overwrite either file: replacing a signing key by accident would leave every bundle it
    approved unverifiable, with no way back.
    """
    for path in (private_path, public_path):
        if path.exists():
            raise SignatureError(f"{path}: already exists; not overwriting a key")
    private_key = Ed25519PrivateKey.generate()
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new_file(private_path, private_pem, 0o600)  # created 0600: never readable by others, even briefly
    _write_new_file(public_path, public_pem, 0o644)
    return key_id(private_key.public_key())


def _read_key_file(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_KEY_BYTES:
            raise SignatureError(f"{path}: too large to be a key file")
        return path.read_bytes()
    except FileNotFoundError:
        raise SignatureError(f"{path}: key file not found") from None
    except IsADirectoryError:
        raise SignatureError(f"{path}: is a directory, not a key file") from None
    except OSError as exc:
        raise SignatureError(f"{path}: cannot read key file: {exc.strerror or exc}") from None


def _read_signature(root: Path, path: Path) -> str:
    try:
        if path.stat().st_size > MAX_SIGNATURE_BYTES:
            raise SignatureError(f"{path}: larger than {MAX_SIGNATURE_BYTES} bytes")
        data = path.read_bytes()
    except FileNotFoundError:
        raise BundleNotSigned(f"{root}: bundle is not signed (no {SIGNATURE_FILE})") from None
    except OSError as exc:
        raise SignatureError(f"{path}: cannot read signature: {exc.strerror or exc}") from None
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise SignatureError(f"{path}: not a compact JWS (non-ASCII content)") from None


def _parse_payload(path: Path, body: bytes) -> dict[str, Any]:
    """The signed payload, shape-checked: a key holder can still sign nonsense, and it must not load."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise SignatureError(f"{path}: signed payload is not JSON") from None
    if not isinstance(payload, dict):
        raise SignatureError(f"{path}: signed payload is not a JSON object")
    version = payload.get("version")
    files = payload.get("files")
    signed_at = payload.get("signed_at")
    signer = payload.get("signer")
    if not isinstance(version, str):
        raise SignatureError(f"{path}: signed payload has no bundle version")
    if type(signed_at) is not int:  # bool is an int subclass; it is not a time
        raise SignatureError(f"{path}: signed payload has no integer signed_at")
    if signer is not None and not isinstance(signer, str):
        raise SignatureError(f"{path}: signed payload signer is not a string")
    if files is not None and not (
        isinstance(files, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
    ):
        raise SignatureError(f"{path}: signed payload files is not a map of path to digest")
    return payload


def _describe_changes(bundle: Bundle, payload: Mapping[str, Any]) -> str:
    """Which files differ from the signed ones, or a generic hint when the payload cannot tell."""
    signed: Mapping[str, str] | None = payload.get("files")
    if signed is None:
        return "files changed since signing?"
    current = {file.path: file.digest for file in bundle.files}
    parts = []
    for label, paths in (
        ("changed", sorted(p for p in current.keys() & signed.keys() if current[p] != signed[p])),
        ("added", sorted(current.keys() - signed.keys())),
        ("removed", sorted(signed.keys() - current.keys())),
    ):
        if paths:
            shown = ", ".join(paths[:_MAX_LISTED_PATHS])
            more = f" and {len(paths) - _MAX_LISTED_PATHS} more" if len(paths) > _MAX_LISTED_PATHS else ""
            parts.append(f"{label}: {shown}{more}")
    # No file differs yet the version does: the payload's file list and version disagree (hand-made token).
    return "; ".join(parts) if parts else "signed version differs, files changed since signing?"


def _write_new_file(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise SignatureError(f"{path}: already exists; not overwriting a key") from None
    except OSError as exc:
        raise SignatureError(f"{path}: cannot create key file: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise SignatureError(f"{path}: cannot write key file: {exc.strerror or exc}") from None


def _key_kind(key: object) -> str:
    """A short name for the wrong key type found ('RSAPublicKey' -> 'RSA'), for the error message."""
    name = type(key).__name__.lstrip("_")
    for suffix in ("PrivateKey", "PublicKey"):
        name = name.removesuffix(suffix)
    return f"found {name}" if name else "unknown key type"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
