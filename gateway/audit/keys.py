"""The audit HMAC key: from config, or generated once and kept beside the local store."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from gateway.secret import Secret

KEY_FILE = "audit-hmac.key"


def load_or_create_hmac_key(configured: Secret | None, directory: Path) -> bytes:
    """Concurrent workers may race here: the key is written aside and linked into place atomically."""
    if configured:
        return configured.reveal().encode()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / KEY_FILE
    if not path.exists():
        scratch = directory / f".{KEY_FILE}.{os.getpid()}"
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(scratch, path)
        except FileExistsError:
            pass  # another worker won the race; use its key
        finally:
            scratch.unlink()
    return path.read_text().strip().encode()
