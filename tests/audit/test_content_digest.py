"""ContentDigest must be exactly HMAC-SHA256: audit readers verify digests with any standard library."""

from __future__ import annotations

import hmac
from hashlib import sha256

import pytest

from gateway.audit.record import ContentDigest


@pytest.mark.parametrize("key", [b"", b"k", b"test-audit-key", b"x" * 64, b"y" * 65, bytes(range(256))])
@pytest.mark.parametrize("data", [b"", b"a", b'{"messages":[],"model":"m"}', b"z" * 10_000])
def test_matches_the_standard_hmac(key: bytes, data: bytes) -> None:
    assert ContentDigest(key).hexdigest(data) == hmac.new(key, data, sha256).hexdigest()


def test_reusable_across_calls() -> None:
    digest = ContentDigest(b"key")
    first = digest.hexdigest(b"one")
    digest.hexdigest(b"two")
    assert digest.hexdigest(b"one") == first
