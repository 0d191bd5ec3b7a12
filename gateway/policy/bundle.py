"""A policy bundle: the exact set of files a policy version is made of, and that version's digest.

The version is the sha256 of a canonical manifest (one `sha256  path` line per file, sorted by path), so
it names the content, not the moment it was loaded: two gateways with the same files report the same
version, a signature over the manifest covers every file (policies, referenced schemas, fixtures), and
any edit, addition or removal changes it. Hidden files and the signature itself are not part of it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

SIGNATURE_FILE = "bundle.jws"
POLICY_SUFFIXES = (".yaml", ".yml")
MAX_BUNDLE_BYTES = 16 * 1024 * 1024  # a policy directory is reviewed text; anything larger is a mistake

_MANIFEST_HEADER = b"gateway-policy-bundle/v1\n"


class BundleError(Exception):
    """The policy directory cannot be read as a bundle (missing, unreadable, too large)."""


@dataclass(frozen=True, slots=True)
class BundleFile:
    path: str  # relative to the bundle root, '/'-separated
    data: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def is_policy(self) -> bool:
        return self.path.endswith(POLICY_SUFFIXES)


@dataclass(frozen=True, slots=True)
class Bundle:
    root: Path
    files: tuple[BundleFile, ...]  # sorted by path

    @property
    def manifest(self) -> bytes:
        return _MANIFEST_HEADER + b"".join(f"{file.digest}  {file.path}\n".encode() for file in self.files)

    @property
    def version(self) -> str:
        return hashlib.sha256(self.manifest).hexdigest()

    def policy_files(self) -> tuple[BundleFile, ...]:
        return tuple(file for file in self.files if file.is_policy)

    def get(self, path: str) -> BundleFile | None:
        """A file of the bundle by its relative path (how policies reference schemas and fixtures)."""
        for file in self.files:
            if file.path == path:
                return file
        return None


EMPTY_VERSION = Bundle(Path("."), ()).version


def read_bundle(root: Path) -> Bundle:
    """Read every file under `root` (blocking I/O: call it off the event loop)."""
    if not root.is_dir():
        raise BundleError(f"{root}: policy directory not found")
    files: list[BundleFile] = []
    total = 0
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if relative.as_posix() == SIGNATURE_FILE:
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BundleError(f"{path}: {exc.strerror or exc}") from None
        total += len(data)
        if total > MAX_BUNDLE_BYTES:
            raise BundleError(f"{root}: policy bundle larger than {MAX_BUNDLE_BYTES} bytes")
        files.append(BundleFile(relative.as_posix(), data))
    files.sort(key=lambda file: file.path)
    return Bundle(root, tuple(files))
