"""Retry rules: which upstream failures are retried, the backoff between tries, and Retry-After."""

from __future__ import annotations

from email.utils import format_datetime
from datetime import datetime, timezone

import pytest

from gateway.errors import (
    UpstreamBadResponse,
    UpstreamConnectError,
    UpstreamError,
    UpstreamRejected,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.routing.retry import NO_RETRY, RETRY_ON, RetryPolicy, failure_class, retry_after_s

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()


def rate_limited(retry_after: str | None = None) -> UpstreamRejected:
    headers = {"retry-after": retry_after} if retry_after is not None else None
    return UpstreamRejected(429, "slow down", headers=headers)


# Every error the adapters raise today (gateway/providers/openai.py), with the class it must map to.
CLASSES: list[tuple[UpstreamError, str | None]] = [
    (UpstreamConnectError("refused"), "connect_error"),
    (UpstreamConnectError("reset", code="upstream_stream_broken"), "connect_error"),
    (UpstreamConnectError("no [DONE]", code="upstream_stream_truncated"), "connect_error"),
    (UpstreamTimeout("t"), "timeout"),
    (UpstreamTimeout("t", code="upstream_connect_timeout"), "timeout"),
    (UpstreamTimeout("t", code="upstream_first_byte_timeout"), "timeout"),
    (UpstreamTimeout("t", code="upstream_idle_timeout"), "timeout"),
    (UpstreamTimeout("t", code="upstream_deadline_exceeded"), "timeout"),
    (UpstreamBadResponse("not JSON"), "bad_response"),
    (UpstreamStatusError("500", code="upstream_status_500"), "5xx"),
    (UpstreamStatusError("502", code="upstream_status_502"), "5xx"),
    (UpstreamStatusError("503", code="upstream_status_503"), "5xx"),
    (UpstreamStatusError("529", code="upstream_status_529"), "5xx"),
    (UpstreamStatusError("mid-stream error event", code="upstream_stream_error"), "5xx"),
    (UpstreamStatusError("default code"), "5xx"),
    (UpstreamStatusError("a 3xx final answer", code="upstream_status_302"), "bad_response"),
    (UpstreamStatusError("401", code="upstream_auth_failed"), None),
    (rate_limited(), "429"),
    (rate_limited("3"), "429"),
    (UpstreamRejected(400, "bad request"), None),
    (UpstreamRejected(404, "no such model"), None),
    (UpstreamRejected(409, "conflict"), None),
    (UpstreamRejected(413, "too large"), None),
    (UpstreamRejected(422, "unprocessable"), None),
    (UpstreamUnavailable("nothing to try"), None),
    (UpstreamUnavailable("fallback", code="fallback_unavailable"), None),
    (UpstreamError("generic"), None),
]


@pytest.mark.parametrize(("error", "expected"), CLASSES, ids=lambda v: v.code if isinstance(v, UpstreamError) else str(v))
def test_failure_class(error: UpstreamError, expected: str | None) -> None:
    assert failure_class(error) == expected
    assert expected is None or expected in RETRY_ON


def test_a_429_is_recognised_by_status_and_keeps_the_rate_limit_type() -> None:
    error = rate_limited()
    assert error.type == "rate_limit_error"
    assert failure_class(error) == "429"


def test_default_policy_never_retries_but_knows_what_it_would_retry() -> None:
    assert NO_RETRY.attempts == 1
    assert NO_RETRY.retry_on == frozenset({"connect_error", "timeout", "429", "5xx"})
    assert NO_RETRY.retries(UpstreamConnectError("x"))
    assert not NO_RETRY.retries(UpstreamBadResponse("x"))  # not in the default set


def test_retries_follows_a_custom_retry_on() -> None:
    policy = RetryPolicy(attempts=3, retry_on=frozenset({"bad_response", "429"}))
    assert policy.retries(UpstreamBadResponse("x"))
    assert policy.retries(rate_limited())
    assert not policy.retries(UpstreamConnectError("x"))
    assert not policy.retries(UpstreamTimeout("x", code="upstream_idle_timeout"))
    assert not policy.retries(UpstreamStatusError("x", code="upstream_status_503"))


def test_retries_never_covers_unretryable_errors_even_with_every_class() -> None:
    policy = RetryPolicy(attempts=3, retry_on=frozenset(RETRY_ON))
    assert not policy.retries(UpstreamRejected(400, "bad"))
    assert not policy.retries(UpstreamStatusError("x", code="upstream_auth_failed"))
    assert not policy.retries(UpstreamUnavailable("x"))


def test_empty_retry_on_retries_nothing() -> None:
    policy = RetryPolicy(attempts=3, retry_on=frozenset())
    assert not any(policy.retries(error) for error, _ in CLASSES)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"backoff_ms": -1},
        {"max_backoff_ms": float("inf")},
        {"max_retry_after_s": float("nan")},
        {"jitter": -0.1},
        {"jitter": 1.5},
        {"retry_on": frozenset({"5xx", "4xx"})},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_backoff_doubles_then_caps() -> None:
    policy = RetryPolicy(attempts=10, backoff_ms=200, max_backoff_ms=5000, jitter=0)
    delays = [policy.delay_s(attempt, None) for attempt in range(1, 9)]
    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0])


def test_backoff_does_not_overflow_on_absurd_attempt_numbers() -> None:
    policy = RetryPolicy(attempts=2, backoff_ms=200, max_backoff_ms=5000, jitter=0)
    assert policy.delay_s(5000, None) == pytest.approx(5.0)
    assert RetryPolicy(backoff_ms=0, jitter=0).delay_s(5000, None) == 0.0


def test_attempt_is_one_based() -> None:
    with pytest.raises(ValueError):
        NO_RETRY.delay_s(0, None)


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 0.8), (0.5, 0.6), (0.999999, 0.4)])
def test_jitter_shortens_by_up_to_its_fraction(draw: float, expected: float) -> None:
    policy = RetryPolicy(backoff_ms=200, jitter=0.5)
    assert policy.delay_s(3, None, random=lambda: draw) == pytest.approx(expected, abs=1e-5)


def test_jitter_bounds_over_many_draws() -> None:
    import random

    rng = random.Random(7)
    policy = RetryPolicy(backoff_ms=1000, max_backoff_ms=1000, jitter=0.25)
    delays = [policy.delay_s(1, None, random=rng.random) for _ in range(1000)]
    assert all(0.75 <= delay <= 1.0 for delay in delays)
    assert max(delays) - min(delays) > 0.2  # it does spread


def test_full_jitter_can_reach_zero() -> None:
    assert RetryPolicy(jitter=1).delay_s(1, None, random=lambda: 1.0) == 0.0


def test_retry_after_longer_than_backoff_wins_without_jitter() -> None:
    policy = RetryPolicy(backoff_ms=200, jitter=0.5)
    assert policy.delay_s(1, rate_limited("3"), random=lambda: 0.9) == 3.0


def test_retry_after_shorter_than_backoff_leaves_backoff() -> None:
    policy = RetryPolicy(backoff_ms=2000, jitter=0)
    assert policy.delay_s(1, rate_limited("1")) == pytest.approx(2.0)


def test_retry_after_is_capped() -> None:
    policy = RetryPolicy(max_retry_after_s=30)
    assert policy.delay_s(1, rate_limited("120")) == 30.0
    assert RetryPolicy(max_retry_after_s=0, jitter=0).delay_s(1, rate_limited("120")) == pytest.approx(0.2)


def test_garbage_retry_after_falls_back_to_backoff() -> None:
    policy = RetryPolicy(jitter=0)
    assert policy.delay_s(2, rate_limited("soon")) == pytest.approx(0.4)


def test_retry_after_on_any_error_carrying_it() -> None:
    error = UpstreamStatusError("busy", code="upstream_status_503", headers={"retry-after": "2"})
    assert RetryPolicy(jitter=0).delay_s(1, error) == 2.0


@pytest.mark.parametrize(("value", "expected"), [("0", 0.0), ("7", 7.0), (" 12 ", 12.0), ("1.5", 1.5), ("120", 120.0)])
def test_retry_after_seconds(value: str, expected: float) -> None:
    assert retry_after_s(rate_limited(value)) == expected


@pytest.mark.parametrize(
    "value",
    ["", "soon", "-1", "-0.5", "+5", "1e3", "nan", "inf", "5s", "1,5", "٣", "9" * 400, "Wed, 32 Oct 2015 07:28:00 GMT", "Mon, 99 Foo"],
)
def test_retry_after_garbage_is_none(value: str) -> None:
    assert retry_after_s(rate_limited(value), now=NOW) is None


def test_retry_after_absent_is_none() -> None:
    assert retry_after_s(rate_limited()) is None
    assert retry_after_s(UpstreamConnectError("refused")) is None


def test_retry_after_http_date() -> None:
    when = datetime.fromtimestamp(NOW + 90, tz=timezone.utc)
    assert retry_after_s(rate_limited(format_datetime(when, usegmt=True)), now=NOW) == pytest.approx(90)
    assert retry_after_s(rate_limited("Sat, 01 Mar 2025 12:00:45 GMT"), now=NOW) == pytest.approx(45)


def test_retry_after_http_date_with_unknown_zone_is_utc() -> None:
    assert retry_after_s(rate_limited("Sat, 01 Mar 2025 12:00:10 -0000"), now=NOW) == pytest.approx(10)


def test_retry_after_http_date_in_the_past_is_none() -> None:
    assert retry_after_s(rate_limited("Sat, 01 Mar 2025 11:59:00 GMT"), now=NOW) is None


def test_retry_after_http_date_defaults_to_the_wall_clock() -> None:
    when = datetime.now(timezone.utc).timestamp() + 600
    seconds = retry_after_s(rate_limited(format_datetime(datetime.fromtimestamp(when, tz=timezone.utc), usegmt=True)))
    assert seconds is not None and 590 <= seconds <= 600


def test_retry_after_header_name_is_case_insensitive() -> None:
    error = UpstreamRejected(429, "slow down", headers={"Retry-After": "4"})
    assert retry_after_s(error) == 4.0


def test_http_date_retry_after_drives_the_delay() -> None:
    import time

    when = datetime.fromtimestamp(time.time() + 20, tz=timezone.utc)
    delay = RetryPolicy(jitter=0).delay_s(1, rate_limited(format_datetime(when, usegmt=True)))
    assert 18 <= delay <= 20
