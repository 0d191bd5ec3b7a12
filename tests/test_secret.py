"""`Secret`: a value that only `reveal()` shows."""

from __future__ import annotations

import pickle

from gateway.secret import Secret

KEY = "sk-very-secret-value"


def test_every_view_is_masked() -> None:
    secret = Secret(KEY)
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s" % secret, repr([secret]), repr({"k": secret})):
        assert KEY not in text
        assert "********" in text


def test_reveal_and_comparisons() -> None:
    assert Secret(KEY).reveal() == KEY
    assert Secret(KEY) == Secret(KEY)
    assert Secret(KEY) != Secret("other")
    assert Secret(KEY) != KEY  # never equal to the bare string
    assert bool(Secret(KEY)) and not bool(Secret(""))
    assert len({Secret(KEY), Secret(KEY)}) == 1


def test_survives_pickling_for_worker_processes() -> None:
    assert pickle.loads(pickle.dumps(Secret(KEY))).reveal() == KEY
